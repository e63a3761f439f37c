/* Starting the Node program the way the kernel would, without execve: a "userland exec". */
#ifndef ATTUNE_ELFEXEC_H
#define ATTUNE_ELFEXEC_H
#include <elf.h>
#include <link.h>
#include <stddef.h>
#include <sys/types.h>

struct image {
  uintptr_t bias;     /* load address minus link address (0 for the ET_EXEC Node binary) */
  uintptr_t entry;
  uintptr_t phdr;     /* program headers, in memory */
  size_t phnum;
};

/* Maps the ELF program stored at `off` in `fd` (page-aligned) at its link address, like execve. */
void map_program(int fd, off_t off, const char *what, struct image *out);
/* Loads the dynamic loader from a verified in-memory copy into fresh anonymous memory. */
void load_interp(const void *file, size_t size, struct image *out);
/* Calls `resolve` for every `@ATTUNE@<soname>@…` DT_NEEDED name and writes its path in place. */
void patch_needed(const struct image *prog, const char *(*resolve)(const char *soname, void *ctx), void *ctx);
/* Replaces this process's program with `prog` run by `interp`: never returns. */
__attribute__((noreturn)) void start_program(const struct image *prog, const struct image *interp, char **argv, char **envp, const ElfW(auxv_t) *auxv);

#endif
