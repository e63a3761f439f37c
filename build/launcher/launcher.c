/*
 * attune-agent's launcher: the first part of the one file dist/attune-agent, a static-pie
 * executable (musl libc) that runs in any x86_64 Linux root - glibc of any age, musl, busybox,
 * distroless, scratch - at any path, as any uid, from a read-only mount.
 *
 * At start it:
 *   0. closes every descriptor >= 3 it inherited: nothing the caller left open reaches the agent
 *      or, through it, an action (the agent needs none; its own are all created later);
 *   1. as PID 1, forks and stays the init (init.c): reaps orphans, forwards signals;
 *   2. reads the payload table at the end of its own file and checks its SHA-256 (payload.c);
 *   3. puts the bundled glibc libraries and the pipes addon where the dynamic loader can open
 *      them, each checked against its SHA-256: sealed memfds, or a per-uid cache dir (unpack.c);
 *   4. starts the Node program stored in the same file with the bundled dynamic loader, without
 *      execve (elfexec.c): the program is mapped in place, nothing is copied.
 *
 * The agent learns what the launcher did from ATTUNE_AGENT_LAUNCHER_* variables, which it removes
 * from its environment at once (src/native/launcher.ts): ADDON (path of attune-pipes.node), SELF (this
 * file's path), UNPACK (memory, or disk:<dir>).
 *
 *   attune-agent --licenses     prints the licence notices of everything inside the file
 *   ATTUNE_AGENT_VERIFY=full    also checks the SHA-256 of the Node program (~100 ms more)
 *   ATTUNE_AGENT_TINI=off       no init as PID 1 (the agent then warns that orphans stay zombies)
 */
#define _GNU_SOURCE
#include "elfexec.h"
#include "init.h"
#include "payload.h"
#include "sha256.h"
#include "unpack.h"
#include "util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LAUNCHER_ENV "ATTUNE_AGENT_LAUNCHER_"

struct resolve_ctx { const struct payload *p; const struct unpacked *u; };

static const char *resolve(const char *soname, void *ctx) {
  const struct resolve_ctx *c = ctx;
  for (uint32_t i = 0; i < c->p->count; i++)
    if (c->p->entries[i].kind == PIECE_LIBRARY && strcmp(c->p->entries[i].name, soname) == 0) return c->u->paths[i];
  return NULL;
}

static int print_notices(const struct payload *p) {
  const struct onefile_entry *e = payload_find(p, PIECE_NOTICE, NULL);
  if (!e) die("%s carries no licence notices", p->path);
  void *text = payload_read(p, e);
  int ok = write_all(1, text, e->size) == 0;
  return ok ? 0 : 1;
}

static void verify_program(const struct payload *p, const struct onefile_entry *e) {
  off_t start = (off_t)e->offset;
  void *m = mmap(NULL, e->size, PROT_READ, MAP_PRIVATE, p->fd, start);
  if (m == MAP_FAILED) die("map %s for its check: %s", p->path, strerror(errno));
  uint8_t digest[32];
  sha256(m, e->size, digest);
  munmap(m, e->size);
  if (memcmp(digest, e->sha256, 32) != 0) die("the Node program inside %s fails its SHA-256 check: the file is damaged; copy it again", p->path);
}

static char *env_entry(const char *name, const char *value) {
  size_t n = strlen(name) + strlen(value) + 2;
  char *s = malloc(n);
  if (!s) die("out of memory");
  snprintf(s, n, "%s=%s", name, value);
  return s;
}

/* The agent's environment: ours, minus any ATTUNE_AGENT_LAUNCHER_* a caller set, plus what we did. */
static char **agent_env(char **envp, const struct payload *p, const struct unpacked *u) {
  size_t n = 0;
  while (envp[n]) n++;
  char **out = malloc((n + 4) * sizeof *out);
  if (!out) die("out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(envp[i], LAUNCHER_ENV, strlen(LAUNCHER_ENV)) != 0) out[k++] = envp[i];
  const struct onefile_entry *addon = payload_find(p, PIECE_ADDON, NULL);
  if (addon) out[k++] = env_entry(LAUNCHER_ENV "ADDON", u->paths[addon - p->entries]);
  out[k++] = env_entry(LAUNCHER_ENV "SELF", p->path);
  char mode[4200];
  fmt(mode, sizeof mode, "%s%s%s", u->mode, u->dir[0] ? ":" : "", u->dir);
  out[k++] = env_entry(LAUNCHER_ENV "UNPACK", mode);
  out[k] = NULL;
  return out;
}

int main(int argc, char **argv, char **envp) {
  close_inherited_fds();
  char **e = envp;
  while (*e) e++;
  const ElfW(auxv_t) *auxv = (const void *)(e + 1);
  int notices = argc == 2 && (!strcmp(argv[1], "--licenses") || !strcmp(argv[1], "--licences"));

  const char *tini = getenv("ATTUNE_AGENT_TINI");
  if (getpid() == 1 && !notices && !(tini && !strcmp(tini, "off"))) become_init(envp);

  struct payload p;
  payload_open(&p);
  if (notices) return print_notices(&p);

  const struct onefile_entry *prog = payload_find(&p, PIECE_PROGRAM, NULL);
  const struct onefile_entry *ld = payload_find(&p, PIECE_INTERP, NULL);
  if (!prog || !ld || prog->offset % 4096) die("%s: the payload lacks its program or dynamic loader: the file is damaged", p.path);
  const char *verify = getenv("ATTUNE_AGENT_VERIFY");
  if (verify && !strcmp(verify, "full")) verify_program(&p, prog);

  /* Large: neither on the stack the program will use nor in the bss it would keep; unmapped below. */
  struct unpacked *up = mmap(NULL, sizeof *up, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (up == MAP_FAILED) die("cannot allocate: %s", strerror(errno));
  unpack(&p, up);

  struct image interp, program;
  void *ld_bytes = payload_read(&p, ld);
  load_interp(ld_bytes, ld->size, &interp);
  munmap(ld_bytes, ld->size);
  map_program(p.fd, (off_t)prog->offset, p.path, &program);
  struct resolve_ctx ctx = { &p, up };
  patch_needed(&program, resolve, &ctx);

  char **env = agent_env(envp, &p, up);
  munmap(up, sizeof *up);
  close(p.fd); /* the mappings keep the file; the memfds stay open (close-on-exec) for the loader */
  start_program(&program, &interp, argv, env, auxv);
}
