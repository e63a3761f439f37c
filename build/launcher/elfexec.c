/*
 * The userland exec. The kernel ran this launcher; the launcher then does what execve does for a
 * dynamically linked program, inside the same process:
 *
 *   1. map the program's PT_LOAD segments from this very file (file-backed, shared with the page
 *      cache and with every other process running the same file: the 105 MB Node binary is never
 *      copied or hashed at start);
 *   2. load glibc's dynamic loader (ld-linux-x86-64.so.2) into anonymous memory;
 *   3. write the paths of the bundled libraries into the program's DT_NEEDED names (placeholders
 *      put there at build time), so the loader opens exactly those files whatever the image has,
 *      whatever LD_LIBRARY_PATH says;
 *   4. build the initial stack (argc, argv, envp, auxv) with AT_PHDR/AT_ENTRY of the program and
 *      AT_BASE of the loader, and jump to the loader's entry point.
 *
 * The loader then relocates itself and the program exactly as after a real execve. The kernel's
 * view stays that of the launcher: /proc/self/exe is this file, so process.execPath is the path
 * of the one file, and a re-exec of it starts the launcher again.
 */
#define _GNU_SOURCE
#include "elfexec.h"
#include "onefile.h"
#include "util.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096UL
#define DOWN(x) ((uintptr_t)(x) & ~(PAGE - 1))
#define UP(x) (((uintptr_t)(x) + PAGE - 1) & ~(PAGE - 1))

static int prot_of(uint32_t f) {
  return (f & PF_R ? PROT_READ : 0) | (f & PF_W ? PROT_WRITE : 0) | (f & PF_X ? PROT_EXEC : 0);
}

static void check_ehdr(const ElfW(Ehdr) *eh, const char *what) {
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
      (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) || eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phnum == 0 || eh->e_phnum > 64)
    die("%s is not an x86_64 ELF program: the file is damaged", what);
}

/* The address span of the PT_LOAD segments, page-rounded. */
static void span(const ElfW(Phdr) *ph, size_t n, uintptr_t *lo, uintptr_t *hi) {
  *lo = UINTPTR_MAX; *hi = 0;
  for (size_t i = 0; i < n; i++) {
    if (ph[i].p_type != PT_LOAD) continue;
    if (DOWN(ph[i].p_vaddr) < *lo) *lo = DOWN(ph[i].p_vaddr);
    if (UP(ph[i].p_vaddr + ph[i].p_memsz) > *hi) *hi = UP(ph[i].p_vaddr + ph[i].p_memsz);
  }
}

/* Zero the tail of the last file page and map anonymous zero pages for the rest of .bss. */
static void map_bss(uintptr_t file_end, uintptr_t mem_end, int prot, const char *what) {
  if (mem_end <= file_end) return;
  uintptr_t page_end = UP(file_end);
  if (file_end < page_end) {
    if (!(prot & PROT_WRITE) && mprotect((void *)DOWN(file_end), PAGE, prot | PROT_WRITE) != 0) die("mprotect %s: %s", what, strerror(errno));
    memset((void *)file_end, 0, (page_end < mem_end ? page_end : mem_end) - file_end);
    if (!(prot & PROT_WRITE)) mprotect((void *)DOWN(file_end), PAGE, prot);
  }
  if (UP(mem_end) > page_end &&
      mmap((void *)page_end, UP(mem_end) - page_end, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    die("map the zeroed data of %s: %s", what, strerror(errno));
}

static void fill_image(const ElfW(Ehdr) *eh, const ElfW(Phdr) *ph, uintptr_t bias, struct image *out) {
  out->bias = bias;
  out->entry = bias + eh->e_entry;
  out->phnum = eh->e_phnum;
  out->phdr = 0;
  for (size_t i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_PHDR) out->phdr = bias + ph[i].p_vaddr;
  if (!out->phdr) /* no PT_PHDR: the headers lie in the first segment, at file offset e_phoff */
    for (size_t i = 0; i < eh->e_phnum; i++)
      if (ph[i].p_type == PT_LOAD && ph[i].p_offset <= eh->e_phoff && eh->e_phoff < ph[i].p_offset + ph[i].p_filesz)
        out->phdr = bias + ph[i].p_vaddr + (eh->e_phoff - ph[i].p_offset);
  if (!out->phdr) die("the program headers are not mapped: the file is damaged");
}

void map_program(int fd, off_t off, const char *what, struct image *out) {
  ElfW(Ehdr) eh;
  if (pread_all(fd, &eh, sizeof eh, off) != 0) die("read the ELF header of %s: %s", what, strerror(errno));
  check_ehdr(&eh, what);
  ElfW(Phdr) ph[64];
  if (pread_all(fd, ph, eh.e_phnum * sizeof *ph, off + (off_t)eh.e_phoff) != 0) die("read the program headers of %s: %s", what, strerror(errno));
  uintptr_t lo, hi, bias = 0;
  span(ph, eh.e_phnum, &lo, &hi);
  if (eh.e_type == ET_DYN) { /* a PIE: reserve a place for the whole span first */
    void *at = mmap(NULL, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED) die("reserve %zu bytes for %s: %s", (size_t)(hi - lo), what, strerror(errno));
    bias = (uintptr_t)at - lo;
  }
  for (size_t i = 0; i < eh.e_phnum; i++) {
    const ElfW(Phdr) *p = &ph[i];
    if (p->p_type != PT_LOAD) continue;
    if ((p->p_vaddr - p->p_offset) % PAGE) die("%s: segment %zu is not page-aligned", what, i);
    int prot = prot_of(p->p_flags);
    uintptr_t start = DOWN(bias + p->p_vaddr);
    uintptr_t file_end = bias + p->p_vaddr + p->p_filesz;
    if (p->p_filesz) {
      int flags = MAP_PRIVATE | (eh.e_type == ET_DYN ? MAP_FIXED : MAP_FIXED_NOREPLACE);
      void *m = mmap((void *)start, UP(file_end) - start, prot, flags, fd, off + (off_t)DOWN(p->p_offset));
      if (m == MAP_FAILED || (uintptr_t)m != start)
        die("map segment %zu of %s at %#lx: %s", i, what, (unsigned long)start, m == MAP_FAILED ? strerror(errno) : "the address is taken");
    } else {
      file_end = start;
    }
    map_bss(file_end, bias + p->p_vaddr + p->p_memsz, prot, what);
  }
  /* The headers must be readable in memory for the loader: they are, in the first (read-only) segment. */
  fill_image(&eh, ph, bias, out);
}

void load_interp(const void *file, size_t size, struct image *out) {
  const ElfW(Ehdr) *eh = file;
  if (size < sizeof *eh) die("the dynamic loader is truncated");
  check_ehdr(eh, "the dynamic loader");
  if (eh->e_type != ET_DYN || eh->e_phoff + eh->e_phnum * sizeof(ElfW(Phdr)) > size) die("the dynamic loader is malformed");
  const ElfW(Phdr) *ph = (const void *)((const char *)file + eh->e_phoff);
  uintptr_t lo, hi;
  span(ph, eh->e_phnum, &lo, &hi);
  char *at = mmap(NULL, hi - lo, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (at == MAP_FAILED) die("reserve memory for the dynamic loader: %s", strerror(errno));
  uintptr_t bias = (uintptr_t)at - lo;
  for (size_t i = 0; i < eh->e_phnum; i++) {
    const ElfW(Phdr) *p = &ph[i];
    if (p->p_type != PT_LOAD) continue;
    if (p->p_offset + p->p_filesz > size) die("the dynamic loader is malformed");
    memcpy((void *)(bias + p->p_vaddr), (const char *)file + p->p_offset, p->p_filesz); /* the rest is already zero */
  }
  for (size_t i = 0; i < eh->e_phnum; i++) {
    const ElfW(Phdr) *p = &ph[i];
    if (p->p_type != PT_LOAD) continue;
    uintptr_t s = DOWN(bias + p->p_vaddr), e = UP(bias + p->p_vaddr + p->p_memsz);
    if (mprotect((void *)s, e - s, prot_of(p->p_flags)) != 0) die("mprotect the dynamic loader: %s", strerror(errno));
  }
  fill_image(eh, ph, bias, out);
}

/* The protection of the program's segment holding `addr` (0 if none). */
static int prot_at(const struct image *prog, uintptr_t addr) {
  const ElfW(Phdr) *ph = (const void *)prog->phdr;
  for (size_t i = 0; i < prog->phnum; i++)
    if (ph[i].p_type == PT_LOAD && DOWN(prog->bias + ph[i].p_vaddr) <= addr && addr < UP(prog->bias + ph[i].p_vaddr + ph[i].p_memsz))
      return prot_of(ph[i].p_flags);
  return 0;
}

/*
 * Writes `len` bytes at `dst` inside the program's mapped (read-only) image: each page is made
 * writable (copy-on-write: only these pages become private copies) and given back its segment's
 * own protection, so the rest stays clean and read-only (the agent's idle trim drops such pages).
 */
static void write_image(const struct image *prog, char *dst, const char *src, size_t len) {
  for (uintptr_t page = DOWN(dst); page < (uintptr_t)dst + len; page += PAGE) {
    int prot = prot_at(prog, page);
    if (!prot) die("the program's string table lies outside its segments: the file is damaged");
    if (!(prot & PROT_WRITE) && mprotect((void *)page, PAGE, prot | PROT_WRITE) != 0) die("mprotect the program's string table: %s", strerror(errno));
    uintptr_t from = page > (uintptr_t)dst ? page : (uintptr_t)dst;
    uintptr_t to = page + PAGE < (uintptr_t)dst + len ? page + PAGE : (uintptr_t)dst + len;
    memcpy((void *)from, src + (from - (uintptr_t)dst), to - from);
    if (!(prot & PROT_WRITE)) mprotect((void *)page, PAGE, prot);
  }
}

void patch_needed(const struct image *prog, const char *(*resolve)(const char *, void *), void *ctx) {
  const ElfW(Phdr) *ph = (const void *)prog->phdr;
  ElfW(Dyn) *dyn = NULL;
  for (size_t i = 0; i < prog->phnum; i++)
    if (ph[i].p_type == PT_DYNAMIC) dyn = (ElfW(Dyn) *)(prog->bias + ph[i].p_vaddr);
  if (!dyn) die("the program has no dynamic section: the file is damaged");
  char *strtab = NULL;
  size_t strsz = 0;
  for (ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
    if (d->d_tag == DT_STRTAB) strtab = (char *)(prog->bias + d->d_un.d_ptr);
    if (d->d_tag == DT_STRSZ) strsz = d->d_un.d_val;
  }
  if (!strtab || !strsz) die("the program has no dynamic string table: the file is damaged");
  size_t prefix = strlen(NEEDED_PLACEHOLDER_PREFIX), patched = 0;
  for (ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
    if (d->d_tag != DT_NEEDED || d->d_un.d_val >= strsz) continue;
    char *name = strtab + d->d_un.d_val;
    if (strncmp(name, NEEDED_PLACEHOLDER_PREFIX, prefix) != 0) continue;
    size_t room = strnlen(name, strsz - d->d_un.d_val) + 1;
    char *end = strchr(name + prefix, '@');
    if (!end || room != NEEDED_PLACEHOLDER_SIZE || d->d_un.d_val + room > strsz) die("malformed library placeholder in the program: the file is damaged");
    char soname[64];
    size_t n = (size_t)(end - name) - prefix;
    if (n == 0 || n >= sizeof soname) die("malformed library placeholder in the program: the file is damaged");
    memcpy(soname, name + prefix, n);
    soname[n] = 0;
    const char *path = resolve(soname, ctx);
    if (!path) die("the program needs %s, which the payload does not carry: the file is damaged", soname);
    if (strlen(path) >= room) die("the path %s is longer than %zu bytes; set ATTUNE_AGENT_CACHE_DIR to a shorter directory", path, room - 1);
    char value[NEEDED_PLACEHOLDER_SIZE] = { 0 };
    memcpy(value, path, strlen(path));
    write_image(prog, name, value, room);
    patched++;
  }
  if (!patched) die("the program carries no library placeholders: it was not built for this launcher");
}

__attribute__((noreturn, noinline)) static void jump(uintptr_t entry, uintptr_t *sp) {
  /* The x86_64 process entry state: %rsp at argc, %rdx = 0 (no exit function from a loader). */
  __asm__ volatile("mov %0, %%rsp\n\txor %%edx, %%edx\n\txor %%ebp, %%ebp\n\tjmp *%1\n" : : "c"(sp), "a"(entry) : "memory");
  __builtin_unreachable();
}

void start_program(const struct image *prog, const struct image *interp, char **argv, char **envp, const ElfW(auxv_t) *auxv) {
  size_t argc = 0, envc = 0, auxc = 0;
  while (argv[argc]) argc++;
  while (envp[envc]) envc++;
  while (auxv[auxc].a_type != AT_NULL) auxc++;
  size_t words = 1 + argc + 1 + envc + 1 + 2 * (auxc + 1);
  /* The new stack lies below this frame, on the process's real stack: the strings it points to
   * (the kernel's, at the top of the stack) stay where they are. */
  uintptr_t area[words + 2];
  uintptr_t *sp = (uintptr_t *)(((uintptr_t)area + 15) & ~(uintptr_t)15);
  uintptr_t *w = sp;
  *w++ = argc;
  for (size_t i = 0; i < argc; i++) *w++ = (uintptr_t)argv[i];
  *w++ = 0;
  for (size_t i = 0; i < envc; i++) *w++ = (uintptr_t)envp[i];
  *w++ = 0;
  for (size_t i = 0; i < auxc; i++) {
    uintptr_t v = auxv[i].a_un.a_val;
    switch (auxv[i].a_type) {
      case AT_PHDR: v = prog->phdr; break;
      case AT_PHNUM: v = prog->phnum; break;
      case AT_PHENT: v = sizeof(ElfW(Phdr)); break;
      case AT_ENTRY: v = prog->entry; break;
      case AT_BASE: v = interp->bias; break;
      default: break;
    }
    *w++ = auxv[i].a_type;
    *w++ = v;
  }
  int has_base = 0;
  for (size_t i = 0; i < auxc; i++) has_base |= auxv[i].a_type == AT_BASE;
  if (!has_base) die("the kernel passed no AT_BASE entry");
  *w++ = AT_NULL;
  *w++ = 0;
  /* What execve resets: every signal unblocked. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  jump(interp->entry, sp);
}
