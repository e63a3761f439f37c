/*
 * Reading the payload. The table is trusted only after its SHA-256 (kept in the footer) matches;
 * each piece is trusted only after its own SHA-256 (kept in the table) matches the bytes that will
 * actually be used: the sealed memfd, the cache file, or the anonymous copy.
 */
#define _GNU_SOURCE
#include "payload.h"
#include "sha256.h"
#include "util.h"
#include <elf.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern const ElfW(Ehdr) __ehdr_start; /* this launcher's own ELF header, as mapped by the kernel */

/* The file must start with the very bytes this launcher runs from: its mapped first page. */
static int is_this_launcher(int fd) {
  size_t page = (size_t)getpagesize();
  char buf[page];
  if (pread_all(fd, buf, page, 0) != 0) return 0;
  const ElfW(Ehdr) *eh = &__ehdr_start;
  size_t n = eh->e_phoff + (size_t)eh->e_phnum * eh->e_phentsize; /* header and program headers */
  return n <= page && memcmp(buf, eh, n) == 0;
}

void payload_open(struct payload *p) {
  memset(p, 0, sizeof *p);
  p->fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (p->fd >= 0) {
    ssize_t n = readlink("/proc/self/exe", p->path, sizeof p->path - 1);
    p->path[n > 0 ? n : 0] = 0;
  } else {
    /* No /proc (a bare chroot): the path the kernel was given, relative to the same working directory. */
    const char *fn = (const char *)getauxval(AT_EXECFN);
    if (!fn) die("cannot find its own executable: /proc is not mounted and the kernel passed no AT_EXECFN");
    p->fd = open(fn, O_RDONLY | O_CLOEXEC);
    if (p->fd < 0) die("cannot open its own executable %s: %s (it must be readable: mode 0555, not 0111)", fn, strerror(errno));
    if (fn[0] == '/') fmt(p->path, sizeof p->path, "%s", fn);
    else {
      char cwd[PATH_MAX];
      if (!getcwd(cwd, sizeof cwd)) die("cannot resolve its own path %s: getcwd: %s", fn, strerror(errno));
      fmt(p->path, sizeof p->path, "%s/%s", cwd, fn);
    }
  }
  if (!is_this_launcher(p->fd)) die("%s is not the file that is running (it was replaced meanwhile?); start it again", p->path);

  struct stat st;
  if (fstat(p->fd, &st) != 0) die("fstat %s: %s", p->path, strerror(errno));
  p->size = st.st_size;
  struct onefile_footer f;
  if (p->size < ONEFILE_FOOTER_SIZE || pread_all(p->fd, &f, sizeof f, p->size - ONEFILE_FOOTER_SIZE) != 0 ||
      memcmp(f.magic, ONEFILE_MAGIC, 16) != 0)
    die("%s has no payload (a truncated or partial copy: %lld bytes); copy the whole file again", p->path, (long long)p->size);
  if (f.count == 0 || f.count > ONEFILE_MAX_PIECES ||
      f.table_offset + (uint64_t)f.count * ONEFILE_ENTRY_SIZE + ONEFILE_FOOTER_SIZE != (uint64_t)p->size)
    die("%s: the payload table does not fit the file size (%lld bytes): the copy is damaged; copy the whole file again", p->path, (long long)p->size);
  p->count = f.count;
  if (pread_all(p->fd, p->entries, f.count * ONEFILE_ENTRY_SIZE, (off_t)f.table_offset) != 0) die("read the payload table of %s: %s", p->path, strerror(errno));
  uint8_t digest[32];
  sha256(p->entries, f.count * ONEFILE_ENTRY_SIZE, digest);
  if (memcmp(digest, f.table_sha256, 32) != 0) die("%s: the payload table fails its SHA-256 check: the file is damaged; copy it again", p->path);
  for (uint32_t i = 0; i < p->count; i++) {
    const struct onefile_entry *e = &p->entries[i];
    if (e->name[sizeof e->name - 1] != 0 || e->offset + e->size > f.table_offset || e->offset + e->size < e->offset)
      die("%s: payload entry %u is malformed: the file is damaged", p->path, i);
  }
  hex(f.table_sha256, 16, p->id);
}

const struct onefile_entry *payload_find(const struct payload *p, enum piece_kind kind, const char *name) {
  for (uint32_t i = 0; i < p->count; i++)
    if (p->entries[i].kind == (uint32_t)kind && (!name || strcmp(p->entries[i].name, name) == 0)) return &p->entries[i];
  return NULL;
}

void *payload_read(const struct payload *p, const struct onefile_entry *e) {
  void *buf = mmap(NULL, e->size ? e->size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) die("cannot allocate %llu bytes for %s: %s", (unsigned long long)e->size, e->name, strerror(errno));
  if (pread_all(p->fd, buf, e->size, (off_t)e->offset) != 0) die("read %s from %s: %s", e->name, p->path, strerror(errno));
  uint8_t digest[32];
  sha256(buf, e->size, digest);
  if (memcmp(digest, e->sha256, 32) != 0) die("%s inside %s fails its SHA-256 check: the file is damaged; copy it again", e->name, p->path);
  return buf;
}

/*
 * Hashing from a buffer that stays in the CPU cache is ~2x faster than hashing freshly faulted
 * pages. The buffer is mapped for the copy and unmapped after it: the launcher's memory stays in
 * the agent's process for good, so it keeps none it does not need.
 */
#define CHUNK (256 * 1024)

static char *chunk_buffer(void) {
  char *b = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b == MAP_FAILED) die("cannot allocate a copy buffer: %s", strerror(errno));
  return b;
}

int payload_copy(const struct payload *p, const struct onefile_entry *e, int fd) {
  char *buf = chunk_buffer();
  struct sha256 h;
  sha256_init(&h);
  off_t off = (off_t)e->offset;
  for (uint64_t left = e->size; left;) {
    size_t want = left < CHUNK ? left : CHUNK;
    if (pread_all(p->fd, buf, want, off) != 0 || write_all(fd, buf, want) != 0) {
      int err = errno;
      munmap(buf, CHUNK);
      errno = err;
      return -1;
    }
    sha256_update(&h, buf, want);
    off += (off_t)want;
    left -= want;
  }
  munmap(buf, CHUNK);
  uint8_t digest[32];
  sha256_final(&h, digest);
  if (memcmp(digest, e->sha256, 32) != 0) die("%s inside %s fails its SHA-256 check: the file is damaged; copy it again", e->name, p->path);
  return 0;
}

int piece_matches(int fd, const struct onefile_entry *e) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != e->size) return 0;
  char *buf = chunk_buffer();
  struct sha256 h;
  sha256_init(&h);
  off_t off = 0;
  int ok = 1;
  for (uint64_t left = e->size; ok && left;) {
    size_t want = left < CHUNK ? left : CHUNK;
    ok = pread_all(fd, buf, want, off) == 0;
    if (ok) sha256_update(&h, buf, want);
    off += (off_t)want;
    left -= want;
  }
  munmap(buf, CHUNK);
  if (!ok) return 0;
  uint8_t digest[32];
  sha256_final(&h, digest);
  return memcmp(digest, e->sha256, 32) == 0;
}
