/*
 * Unpacking the libraries and the addon, which the dynamic loader opens by path.
 *
 * memory: each piece is copied into a memfd through a buffer whose bytes are hashed as they are
 *   written, then the memfd is sealed (no write, grow or shrink): nobody else ever holds it, so the
 *   bytes checked are the bytes mapped. The loader opens it as /proc/self/fd/N. Private to this
 *   process, nothing on disk, safe with any number of concurrent starts. Cost: the pieces' size
 *   (~5.5 MB) in memory per running agent, and ~5 ms to copy and hash them.
 * disk: <base>/attune-agent-<uid>/<payload id>/, for a root without /proc. The uid directory must
 *   be a real directory (not a symlink) owned by this uid with mode 0700 - otherwise another uid
 *   could swap files in - and every file is checked (owner, mode, size, SHA-256) at every start.
 *   A new version is written into a private temporary directory and renamed into place, so
 *   concurrent starts never see a half-written one: the loser of the rename uses the winner's.
 *   Leftover temporary directories, and other versions unused for a day, are removed.
 */
#define _GNU_SOURCE
#include "unpack.h"
#include "util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

static int wanted(const struct onefile_entry *e) {
  return e->kind == PIECE_LIBRARY || e->kind == PIECE_ADDON;
}

// ───────────────────────────── memory ─────────────────────────────

static int memfd_for(const char *name) {
  char label[64];
  snprintf(label, sizeof label, "attune-agent:%s", name);
  /* Never executed, only mapped: ask for a non-executable memfd where the kernel knows the flag. */
  int fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  if (fd < 0 && errno == EINVAL) fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  return fd;
}

static int unpack_memory(const struct payload *p, struct unpacked *u) {
  for (uint32_t i = 0; i < p->count; i++) {
    const struct onefile_entry *e = &p->entries[i];
    if (!wanted(e)) continue;
    int fd = memfd_for(e->name);
    if (fd < 0) return fmt(u->reason, sizeof u->reason, "memfd_create: %s", strerror(errno)), -1;
    if (payload_copy(p, e, fd) != 0) return fmt(u->reason, sizeof u->reason, "copy %s into memory: %s", e->name, strerror(errno)), -1;
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
      return fmt(u->reason, sizeof u->reason, "seal the memfd of %s: %s", e->name, strerror(errno)), -1;
    /* A security policy may forbid mapping shared memory as code (SELinux execute on tmpfs): then the disk. */
    void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return fmt(u->reason, sizeof u->reason, "%s in memory cannot be mapped as code: %s", e->name, strerror(errno)), -1;
    munmap(m, 4096);
    fmt(u->paths[i], sizeof u->paths[i], "/proc/self/fd/%d", fd);
    struct stat a, b;
    if (stat(u->paths[i], &a) != 0) return fmt(u->reason, sizeof u->reason, "%s: %s (is /proc mounted?)", u->paths[i], strerror(errno)), -1;
    if (fstat(fd, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
      return fmt(u->reason, sizeof u->reason, "%s is not this process's memfd (/proc belongs to another PID namespace)", u->paths[i]), -1;
  }
  u->mode = "memory";
  return 0;
}

static void close_memfds(const struct payload *p, struct unpacked *u) {
  for (uint32_t i = 0; i < p->count; i++) {
    int fd;
    if (u->paths[i][0] && sscanf(u->paths[i], "/proc/self/fd/%d", &fd) == 1) close(fd);
    u->paths[i][0] = 0;
  }
}

// ───────────────────────────── disk ─────────────────────────────

/* A directory that only this uid can change: a real directory, owned by us, no group/other access. */
static int private_dir(int dfd, char *why, size_t whysize, const char *path) {
  struct stat st;
  if (fstat(dfd, &st) != 0) return fmt(why, whysize, "%s: %s", path, strerror(errno)), 0;
  if (st.st_uid != geteuid()) return fmt(why, whysize, "%s belongs to uid %u, not to this uid %u", path, st.st_uid, geteuid()), 0;
  if (st.st_mode & 077) return fmt(why, whysize, "%s has mode %03o (group or others may enter it); expected 0700", path, st.st_mode & 0777), 0;
  return 1;
}

/* Every piece present, a regular file owned by us, not writable by others, with its SHA-256. */
static int version_ok(int vfd, const struct payload *p) {
  for (uint32_t i = 0; i < p->count; i++) {
    const struct onefile_entry *e = &p->entries[i];
    if (!wanted(e)) continue;
    int fd = openat(vfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022) && piece_matches(fd, e);
    close(fd);
    if (!ok) return 0;
  }
  return 1;
}

static void remove_tree(int dfd, const char *name) {
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    fchmod(fd, 0700);
    DIR *d = fdopendir(fd);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) unlinkat(fd, de->d_name, 0);
      closedir(d);
    } else close(fd);
  }
  unlinkat(dfd, name, AT_REMOVEDIR);
}

static int is_version_name(const char *n) {
  if (strlen(n) != 32) return 0;
  for (const char *c = n; *c; c++) if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
  return 1;
}

/* Temporary leftovers older than 10 minutes, and other versions untouched for a day. */
static void clean_old(int ufd, const char *keep) {
  int fd = dup(ufd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) { if (fd >= 0) close(fd); return; }
  time_t now = time(NULL);
  struct dirent *de;
  while ((de = readdir(d))) {
    struct stat st;
    if (fstatat(ufd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) continue;
    int tmp = strncmp(de->d_name, ".tmp-", 5) == 0 || strncmp(de->d_name, ".stale-", 7) == 0;
    if ((tmp && now - st.st_mtime > 600) || (is_version_name(de->d_name) && strcmp(de->d_name, keep) && now - st.st_atime > 86400 && now - st.st_mtime > 86400))
      remove_tree(ufd, de->d_name);
  }
  closedir(d);
}

static int write_version(int ufd, const struct payload *p, char *why, size_t whysize) {
  char tmp[64];
  snprintf(tmp, sizeof tmp, ".tmp-%d-%lx", getpid(), (unsigned long)time(NULL));
  if (mkdirat(ufd, tmp, 0700) != 0) return fmt(why, whysize, "mkdir %s: %s", tmp, strerror(errno)), -1;
  int tfd = openat(ufd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int ok = tfd >= 0;
  for (uint32_t i = 0; ok && i < p->count; i++) {
    const struct onefile_entry *e = &p->entries[i];
    if (!wanted(e)) continue;
    int fd = openat(tfd, e->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0500);
    ok = fd >= 0 && payload_copy(p, e, fd) == 0 && fsync(fd) == 0;
    if (!ok) fmt(why, whysize, "write %s: %s", e->name, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (ok && fchmod(tfd, 0500) != 0) ok = 0;
  if (tfd >= 0) close(tfd);
  if (ok && renameat(ufd, tmp, ufd, p->id) == 0) return 0;
  int e = errno;
  remove_tree(ufd, tmp);
  if (ok && (e == EEXIST || e == ENOTEMPTY)) return 1; /* another start won the rename: use its copy */
  if (ok) fmt(why, whysize, "rename into place: %s", strerror(e));
  return -1;
}

/* The library pieces must be mappable as code from there (not a noexec mount). */
static int executable_mount(const char *dir, const struct payload *p, char *why, size_t whysize) {
  const struct onefile_entry *e = payload_find(p, PIECE_LIBRARY, NULL);
  char path[4200];
  fmt(path, sizeof path, "%s/%s", dir, e->name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  void *m = fd >= 0 ? mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  if (fd >= 0) close(fd);
  if (m == MAP_FAILED) return fmt(why, whysize, "%s cannot be mapped as code (%s): a noexec mount", dir, strerror(errno)), 0;
  munmap(m, 4096);
  return 1;
}

static int try_base(const struct payload *p, struct unpacked *u, const char *base, char *why, size_t whysize) {
  if (base[0] != '/') return fmt(why, whysize, "not an absolute path"), -1;
  char udir[4096];
  fmt(udir, sizeof udir, "%s/attune-agent-%u", strcmp(base, "/") ? base : "", geteuid());
  if (mkdir(udir, 0700) != 0 && errno != EEXIST) return fmt(why, whysize, "mkdir %s: %s", udir, strerror(errno)), -1;
  int ufd = open(udir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (ufd < 0) return fmt(why, whysize, "%s: %s (a symlink is refused)", udir, strerror(errno)), -1;
  if (!private_dir(ufd, why, whysize, udir)) return close(ufd), -1;
  for (int attempt = 0; attempt < 3; attempt++) {
    int vfd = openat(ufd, p->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (vfd >= 0) {
      int ok = version_ok(vfd, p);
      close(vfd);
      if (ok) {
        fmt(u->dir, sizeof u->dir, "%s/%s", udir, p->id);
        if (!executable_mount(u->dir, p, why, whysize)) return close(ufd), -1;
        clean_old(ufd, p->id);
        close(ufd);
        for (uint32_t i = 0; i < p->count; i++)
          if (wanted(&p->entries[i])) fmt(u->paths[i], sizeof u->paths[i], "%s/%s", u->dir, p->entries[i].name);
        u->mode = "disk";
        return 0;
      }
      /* Damaged or incomplete (a crash mid-write, a full disk): move it aside and write it again. */
      char stale[64];
      snprintf(stale, sizeof stale, ".stale-%d-%d", getpid(), attempt);
      if (renameat(ufd, p->id, ufd, stale) == 0) remove_tree(ufd, stale);
    }
    if (write_version(ufd, p, why, whysize) < 0) return close(ufd), -1;
  }
  close(ufd);
  return fmt(why, whysize, "%s/%s keeps failing its check", udir, p->id), -1;
}

static int unpack_disk(const struct payload *p, struct unpacked *u, char *tried, size_t triedsize) {
  /* Named by the environment first (reported even when missing), then the usual places that exist. */
  const char *bases[] = { getenv("ATTUNE_AGENT_CACHE_DIR"), getenv("XDG_RUNTIME_DIR"), getenv("TMPDIR"), "/tmp", "/var/tmp", "/dev/shm" };
  const size_t from_env = 3;
  size_t used = 0;
  tried[0] = 0;
  for (size_t i = 0; i < sizeof bases / sizeof *bases; i++) {
    if (!bases[i] || !bases[i][0]) continue;
    struct stat st;
    if (i >= from_env && stat(bases[i], &st) != 0) continue;
    char why[1024] = "";
    if (try_base(p, u, bases[i], why, sizeof why) == 0) return 0;
    int n = snprintf(tried + used, triedsize - used, "%s%s (%s)", used ? "; " : "", bases[i], why);
    if (n > 0 && (size_t)n < triedsize - used) used += (size_t)n;
  }
  return -1;
}

void unpack(const struct payload *p, struct unpacked *u) {
  memset(u, 0, sizeof *u);
  const char *mode = getenv("ATTUNE_AGENT_UNPACK");
  if (!mode || !*mode) mode = "auto";
  if (strcmp(mode, "auto") && strcmp(mode, "memory") && strcmp(mode, "disk"))
    die("ATTUNE_AGENT_UNPACK=%s is not one of auto, memory, disk", mode);
  if (strcmp(mode, "disk") != 0) {
    if (unpack_memory(p, u) == 0) return;
    close_memfds(p, u);
    if (strcmp(mode, "memory") == 0) die("ATTUNE_AGENT_UNPACK=memory, but %s", u->reason);
  }
  char tried[4096];
  if (unpack_disk(p, u, tried, sizeof tried) == 0) return;
  if (strcmp(mode, "disk") == 0) die("ATTUNE_AGENT_UNPACK=disk, but no directory is usable: %s. Set ATTUNE_AGENT_CACHE_DIR to a writable directory", tried);
  die("its libraries cannot be put in memory (%s) nor on disk (tried %s). Mount /proc (every container runtime does), "
      "or give it a writable, exec-able directory: ATTUNE_AGENT_CACHE_DIR, TMPDIR or /tmp", u->reason, tried);
}
