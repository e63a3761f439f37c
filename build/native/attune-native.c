/*
 * attune-native.c, shipped as lib/attune-pipes.node (the name the agent and its operators know; the
 * file is named for all it does): seven Node-API functions for running actions the way the Rust agent
 * does and for giving memory back while idle. Loaded by src/native/addon.ts.
 *
 * pipe() -> [readFd, writeFd]: a real pipe (O_CLOEXEC on both ends). Node/libuv give a child's
 *   stdio Unix socket pairs, and Linux refuses to open a socket through /proc/self/fd, so an action
 *   doing `echo x > /dev/stderr`, `tee /dev/stderr`, `cat /dev/stdin` or open("/dev/stdout") fails
 *   with ENXIO under a Node parent. The Rust agent (tokio) uses pipes; with these the agent does too.
 *
 * spawn(file, argv, env, cwd, stdinFd, stdoutFd, stderrFd) -> Promise<pid>: posix_spawn() in a
 *   new session (setsid: the action leads its own process group), every signal at its default
 *   disposition and unblocked, the three fds as 0/1/2, run on a libuv thread-pool thread. Why not
 *   child_process.spawn: libuv fork()s the whole agent, which blocks the event loop for
 *   milliseconds (page tables of ~90 MB) on every execution; glibc's posix_spawn uses
 *   clone(CLONE_VM|CLONE_VFORK), costs the same whatever the agent's size, and suspends only the
 *   calling thread until the exec. Rejects with an Error whose `errno` is the failure (ENOENT,
 *   EACCES, ETXTBSY, ENOEXEC...).
 *
 * wait(pid) -> null while it runs, else [exitCode, signal] (one of them -1): waitid(WNOHANG) on that
 *   pid only, so libuv's own children and tini's orphans are never reaped here. The caller calls it on
 *   SIGCHLD (src/native/spawn.ts).
 *
 * releaseMemory(filePages) -> bytes: called when the agent is idle (src/worker/idle-trim.ts through
 *   src/native/memory.ts).
 *   malloc_trim(0) hands freed heap back to the kernel; with filePages the clean pages of read-only
 *   file mappings (the executable's code and data: ~55 MB after start-up, much of it start-up code
 *   never run again) are dropped from this process's page tables with MADV_DONTNEED. They stay in the page cache; what
 *   is used again faults back in from there. Only mappings that are not writable and hold no
 *   private (copied-on-write) page are touched, so nothing but a clean copy of the file is dropped.
 *
 * harden() -> { dumpable, environBytes, cloexecFds }: called once the configuration is read, before
 *   any action can start (src/native/harden.ts). The agent's secrets then stay out of reach of the
 *   actions, which run as the same uid:
 *   - PR_SET_DUMPABLE 0: /proc/<agent>/{environ,mem,maps,fd,...} become root's, and a same-uid
 *     process can no longer ptrace the agent or read its memory (/proc/self stays the agent's own);
 *   - the initial environment block (the kernel's copy at the top of the stack, which is what
 *     /proc/<agent>/environ shows, even to root) is zeroed, after every environ entry still
 *     pointing into it was copied to the heap: getenv and process.env keep working;
 *   - every descriptor >= 3 gets FD_CLOEXEC (close_range), so nothing inherited reaches an action.
 *   Throws when prctl fails; environBytes is -1 when /proc/self/stat cannot be read (no /proc: then
 *   no other process can read /proc/<agent>/environ either).
 *
 * inheritable(fd): clears FD_CLOEXEC; the tini re-exec hands the agent's environment to its new
 *   self through a pipe that way (src/native/env-handoff.ts), so tini's own environment stays empty.
 *
 * Only glibc symbols older than Node 24's own floor (glibc 2.28) are required.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <node_api.h>

#define CHECK(call) do { if ((call) != napi_ok) goto napi_fail; } while (0)

static napi_value errno_error(napi_env env, int e, const char *what) {
  napi_value msg, err, code;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", what, strerror(e));
  if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg) != napi_ok || napi_create_error(env, NULL, msg, &err) != napi_ok ||
      napi_create_int32(env, e, &code) != napi_ok || napi_set_named_property(env, err, "errno", code) != napi_ok)
    return NULL;
  return err;
}

static void throw_errno(napi_env env, int e, const char *what) {
  napi_value err = errno_error(env, e, what);
  if (err != NULL) napi_throw(env, err);
  else napi_throw_error(env, NULL, what);
}

static napi_value make_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    throw_errno(env, errno, "pipe2");
    return NULL;
  }
  napi_value arr, r, w;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  CHECK(napi_create_int32(env, fds[0], &r));
  CHECK(napi_create_int32(env, fds[1], &w));
  CHECK(napi_set_element(env, arr, 0, r));
  CHECK(napi_set_element(env, arr, 1, w));
  return arr;
napi_fail:
  close(fds[0]);
  close(fds[1]);
  napi_throw_error(env, NULL, "attune-pipes: cannot build the result");
  return NULL;
}

/* A JS string as a malloc'd C string (NULL on failure; an exception may be pending). */
static char *string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return NULL;
  }
  if (strlen(s) != len) { /* an embedded NUL: execve would cut the string silently */
    free(s);
    return NULL;
  }
  return s;
}

static void free_list(char **list) {
  if (list == NULL) return;
  for (char **p = list; *p != NULL; p++) free(*p);
  free(list);
}

/* A JS array of strings as a NULL-terminated list (NULL on failure). */
static char **list_arg(napi_env env, napi_value arr) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok) return NULL;
  char **list = calloc((size_t)n + 1, sizeof(char *));
  if (list == NULL) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    if (napi_get_element(env, arr, i, &el) != napi_ok || (list[i] = string_arg(env, el)) == NULL) {
      free_list(list);
      return NULL;
    }
  }
  return list;
}

/* glibc 2.29; weak, so the addon still loads on glibc 2.28 (a working directory then fails ENOSYS
 * and the caller uses child_process.spawn). */
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *, const char *) __attribute__((weak));

/* One spawn, prepared on the main thread, run on a libuv thread-pool thread. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *file, *cwd, **argv, **envp;
  int fds[3];
  pid_t pid;
  int err;
} spawn_job;

static void free_job(spawn_job *job) {
  free(job->file);
  free(job->cwd);
  free_list(job->argv);
  free_list(job->envp);
  free(job);
}

/* Thread-pool side: no Node-API calls here. posix_spawn suspends only this thread until the
 * child has exec'd (or failed to), never the event loop. */
static void spawn_execute(napi_env env, void *data) {
  (void)env;
  spawn_job *job = data;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  /* sigfillset leaves out glibc's two internal signals (32, 33), and posix_spawn then sets them to
   * SIG_IGN in the child, which survives the exec. Default them too, as libuv's fork path does:
   * an action must inherit no ignored signal. */
  for (int sig = 32; sig <= 33 && sig < SIGRTMIN; sig++) ((unsigned long *)&all)[(sig - 1) / (8 * sizeof(unsigned long))] |= 1UL << ((sig - 1) % (8 * sizeof(unsigned long)));
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc != 0) {
    job->err = rc;
    return;
  }
  rc = posix_spawnattr_init(&attr);
  if (rc != 0) {
    posix_spawn_file_actions_destroy(&actions);
    job->err = rc;
    return;
  }
  rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
  /* dup2 clears close-on-exec on the copies; the originals stay close-on-exec. */
  for (int i = 0; rc == 0 && i < 3; i++) rc = posix_spawn_file_actions_adddup2(&actions, job->fds[i], i);
  if (rc == 0 && job->cwd != NULL) {
    rc = posix_spawn_file_actions_addchdir_np == NULL ? ENOSYS : posix_spawn_file_actions_addchdir_np(&actions, job->cwd);
  }
  if (rc == 0) rc = posix_spawn(&job->pid, job->file, &actions, &attr, job->argv, job->envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  job->err = rc;
}

/* Main-thread side: settle the promise, free the job. */
static void spawn_complete(napi_env env, napi_status status, void *data) {
  spawn_job *job = data;
  napi_value value = NULL;
  if (status != napi_ok) job->err = job->err ? job->err : ECANCELED;
  if (job->err == 0 && napi_create_int32(env, job->pid, &value) == napi_ok) {
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    value = errno_error(env, job->err ? job->err : EINVAL, "posix_spawn");
    if (value == NULL) napi_get_undefined(env, &value);
    napi_reject_deferred(env, job->deferred, value);
  }
  napi_delete_async_work(env, job->work);
  free_job(job);
}

/* spawn(file, argv, env, cwd, stdinFd, stdoutFd, stderrFd) -> Promise<pid>. The fds must stay
 * open until it settles. */
static napi_value spawn_action(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7], promise, name;
  napi_valuetype cwd_type;
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc != 7) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, env, cwd, stdinFd, stdoutFd, stderrFd)");
    return NULL;
  }
  spawn_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    throw_errno(env, ENOMEM, "spawn");
    return NULL;
  }
  int ok = 1;
  for (int i = 0; ok && i < 3; i++) ok = napi_get_value_int32(env, args[4 + i], &job->fds[i]) == napi_ok;
  ok = ok && napi_typeof(env, args[3], &cwd_type) == napi_ok;
  if (ok) {
    job->file = string_arg(env, args[0]);
    job->argv = list_arg(env, args[1]);
    job->envp = list_arg(env, args[2]);
    if (cwd_type == napi_string) job->cwd = string_arg(env, args[3]);
    ok = job->file != NULL && job->argv != NULL && job->envp != NULL && (cwd_type != napi_string || job->cwd != NULL);
  }
  if (!ok) {
    free_job(job);
    napi_throw_type_error(env, "EINVAL", "spawn: arguments must be strings without NUL bytes, fds integers");
    return NULL;
  }
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "attune-spawn", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, spawn_execute, spawn_complete, job, &job->work) != napi_ok) {
    free_job(job);
    napi_throw_error(env, NULL, "attune-pipes: cannot queue the spawn");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    free_job(job);
    napi_throw_error(env, NULL, "attune-pipes: cannot queue the spawn");
    return NULL;
  }
  return promise;
}

static napi_value wait_action(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg, result, code, sig;
  int32_t pid;
  CHECK(napi_get_cb_info(env, info, &argc, &arg, NULL, NULL));
  CHECK(napi_get_value_int32(env, arg, &pid));
  if (pid <= 0) {
    throw_errno(env, EINVAL, "wait");
    return NULL;
  }
  siginfo_t si;
  int rc;
  do {
    memset(&si, 0, sizeof si);
    rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    throw_errno(env, errno, "waitid");
    return NULL;
  }
  if (si.si_pid == 0) {
    CHECK(napi_get_null(env, &result));
    return result;
  }
  int exited = si.si_code == CLD_EXITED;
  CHECK(napi_create_int32(env, exited ? si.si_status : -1, &code));
  CHECK(napi_create_int32(env, exited ? -1 : si.si_status, &sig));
  CHECK(napi_create_array_with_length(env, 2, &result));
  CHECK(napi_set_element(env, result, 0, code));
  CHECK(napi_set_element(env, result, 1, sig));
  return result;
napi_fail:
  napi_throw_error(env, NULL, "attune-pipes: bad wait argument");
  return NULL;
}

#define MAX_RANGES 1024

static napi_value release_memory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  bool file_pages = false;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || (argc >= 1 && napi_get_value_bool(env, arg, &file_pages) != napi_ok)) {
    napi_throw_type_error(env, NULL, "releaseMemory(filePages: boolean)");
    return NULL;
  }
  malloc_trim(0);
  FILE *f = file_pages ? fopen("/proc/self/smaps", "re") : NULL;
  double released = 0;
  if (f != NULL) {
    static unsigned long starts[MAX_RANGES], ends[MAX_RANGES];
    int n = 0;
    char line[4096];
    unsigned long start = 0, end = 0, inode = 0, rss_kb = 0, anon_kb = 1;
    char perms[8] = "";
    int candidate = 0;
    while (fgets(line, sizeof line, f) != NULL) {
      unsigned long a, b, off, ino;
      char p[8], dev[16];
      int pathpos = 0;
      if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &a, &b, p, &off, dev, &ino, &pathpos) >= 6 && strchr(line, '-') != NULL &&
          line[0] != ' ' && strncmp(line, "VmFlags", 7) != 0) {
        start = a; end = b; inode = ino; rss_kb = 0; anon_kb = 1;
        memcpy(perms, p, sizeof perms);
        candidate = inode != 0 && pathpos > 0 && line[pathpos] == '/' && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p';
      } else if (strncmp(line, "Rss:", 4) == 0) {
        rss_kb = strtoul(line + 4, NULL, 10);
      } else if (strncmp(line, "Anonymous:", 10) == 0) {
        anon_kb = strtoul(line + 10, NULL, 10);
      } else if (strncmp(line, "VmFlags:", 8) == 0) {
        /* The last line of a mapping's block: locked (lo) or I/O (io) mappings are left alone. */
        if (candidate && anon_kb == 0 && rss_kb > 0 && strstr(line, " lo") == NULL && strstr(line, " io") == NULL && n < MAX_RANGES) {
          starts[n] = start;
          ends[n] = end;
          n++;
          released += (double)rss_kb * 1024;
        }
        candidate = 0;
      }
    }
    fclose(f);
    /* After the file is closed: madvise changes no mapping, but keep reading and dropping apart. */
    for (int i = 0; i < n; i++) madvise((void *)starts[i], ends[i] - starts[i], MADV_DONTNEED);
  }
  napi_value result;
  if (napi_create_double(env, released, &result) != napi_ok) return NULL;
  return result;
}

/*
 * keepLargeAllocationsMapped(): glibc serves allocations of >= 128 KiB with their own mmap and
 * unmaps them on free, but raises that threshold to the size of each such block freed (up to
 * 32 MiB). After one action's 10 MiB output (its capture, the result JSON, the driver's buffers)
 * the next ones come from the heap, which keeps them after free(): RSS stays ~10-30 MB higher.
 * A fixed threshold keeps big blocks mapped, so they go back to the kernel as soon as they are
 * freed. Small allocations are unaffected.
 */
static napi_value keep_large_allocations_mapped(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (napi_get_boolean(env, mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1, &result) != napi_ok) return NULL;
  return result;
}

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

/* [start, end) of the initial environment block: fields 50 and 51 of /proc/self/stat (man 5 proc). */
static int environ_block(unsigned long *start, unsigned long *end) {
  FILE *f = fopen("/proc/self/stat", "re");
  if (f == NULL) return -1;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name (field 2) may hold spaces and parentheses */
  if (p == NULL) return -1;
  p++;
  unsigned long v = 0;
  for (int field = 3; field <= 51; field++) { /* field 3 is the state letter, the rest are numbers */
    while (*p == ' ') p++;
    if (*p == 0) return -1;
    char *next = p;
    v = strtoul(p, &next, 10);
    if (field == 3) next = p + 1;
    if (field == 50) *start = v;
    p = next;
    if (*p != ' ' && *p != '\n' && *p != 0) return -1;
  }
  *end = v;
  return *start != 0 && *end > *start ? 0 : -1;
}

/* Copies every environ entry lying in the block to the heap, then zeroes the block. Bytes zeroed, or -1. */
static long scrub_environ_block(void) {
  unsigned long start = 0, end = 0;
  if (environ_block(&start, &end) != 0) return -1;
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    unsigned long at = (unsigned long)*e;
    if (at < start || at >= end) continue;
    char *copy = strdup(*e);
    if (copy == NULL) return -1;
    *e = copy;
  }
  memset((void *)start, 0, end - start);
  return (long)(end - start);
}

/* FD_CLOEXEC on every descriptor >= 3; how many were open (close_range does not say: -1). */
static int cloexec_from_3(void) {
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return -1;
  DIR *d = opendir("/proc/self/fd"); /* kernels before 5.11 */
  if (d == NULL) return 0;
  int n = 0, own = dirfd(d);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    int fd = atoi(de->d_name);
    if (fd < 3 || fd == own) continue;
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0) n++;
  }
  closedir(d);
  return n;
}

static napi_value harden(napi_env env, napi_callback_info info) {
  (void)info;
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    throw_errno(env, errno, "prctl(PR_SET_DUMPABLE, 0)");
    return NULL;
  }
  long scrubbed = scrub_environ_block();
  int cloexec = cloexec_from_3();
  napi_value result, v;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_get_boolean(env, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0, &v));
  CHECK(napi_set_named_property(env, result, "dumpable", v));
  CHECK(napi_create_double(env, (double)scrubbed, &v));
  CHECK(napi_set_named_property(env, result, "environBytes", v));
  CHECK(napi_create_int32(env, cloexec, &v));
  CHECK(napi_set_named_property(env, result, "cloexecFds", v));
  return result;
napi_fail:
  napi_throw_error(env, NULL, "attune-pipes: cannot build the result");
  return NULL;
}

/* inheritable(fd): clears FD_CLOEXEC, so the descriptor survives execve (src/native/env-handoff.ts). */
static napi_value inheritable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int32(env, arg, &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "inheritable(fd: number)");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) != 0) {
    throw_errno(env, errno, "fcntl(F_SETFD)");
    return NULL;
  }
  return NULL;
}

static int export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (!export_fn(env, exports, "pipe", make_pipe) || !export_fn(env, exports, "spawn", spawn_action) ||
      !export_fn(env, exports, "wait", wait_action) || !export_fn(env, exports, "releaseMemory", release_memory) ||
      !export_fn(env, exports, "keepLargeAllocationsMapped", keep_large_allocations_mapped) || !export_fn(env, exports, "harden", harden) ||
      !export_fn(env, exports, "inheritable", inheritable))
    return NULL;
  return exports;
}
