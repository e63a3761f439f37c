/*
 * The init of a PID namespace, the job tini-static did beside the portable folder (tini -s -g):
 * Node neither reaps orphans (no PR_SET_CHILD_SUBREAPER, and no SIGCHLD handler for others'
 * children) nor, as PID 1, gets the container's SIGTERM unless it handles it. The parent stays
 * small: it forks before anything is unpacked or mapped, so it holds only this static launcher.
 */
#define _GNU_SOURCE
#include "init.h"
#include "util.h"
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static __attribute__((noreturn)) void supervise(pid_t agent) {
  sigset_t all;
  sigfillset(&all);
  int status = 0, done = 0;
  for (;;) {
    /* Signals stay blocked: a PID 1 does not lose a blocked signal, and none interrupts the reaping. */
    struct timespec tick = { 1, 0 };
    siginfo_t si;
    int sig = sigtimedwait(&all, &si, &tick);
    if (sig > 0 && sig != SIGCHLD) {
      /* Like tini -g: the agent's process group (actions run in sessions of their own). */
      if (kill(-agent, sig) != 0 && errno == ESRCH) kill(agent, sig);
    }
    /* Reap everything that has ended: the agent, and every orphan reparented to us. */
    for (;;) {
      int st;
      pid_t p = waitpid(-1, &st, WNOHANG);
      if (p <= 0) break;
      if (p == agent) { status = st; done = 1; }
    }
    if (done) _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
}

/*
 * The kernel copied the environment strings one after the other into a single block at the top of
 * the stack (what /proc/<pid>/environ reads): from the first string to the end of the last one.
 */
static void drop_environment(char **envp) {
  char *lo = NULL, *hi = NULL;
  for (char **e = envp; *e; e++) {
    char *end = *e + strlen(*e) + 1;
    if (!lo || *e < lo) lo = *e;
    if (end > hi) hi = end;
  }
  if (lo) memset(lo, 0, (size_t)(hi - lo));
  envp[0] = NULL;
}

void become_init(char **envp) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t pid = fork();
  if (pid < 0) die("fork the agent under its init (this process is PID 1): %s", strerror(errno));
  if (pid > 0) {
    setpgid(pid, pid); /* also here: a signal may come before the child has run */
    drop_environment(envp);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    supervise(pid);
  }
  /* The agent: a process group of its own (the target of forwarded signals), in the foreground of a terminal if any. */
  setpgid(0, 0);
  if (isatty(0)) {
    signal(SIGTTOU, SIG_IGN);
    tcsetpgrp(0, getpid());
    signal(SIGTTOU, SIG_DFL);
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
}
