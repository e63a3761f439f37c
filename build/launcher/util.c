#include "util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

void die(const char *f, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, f);
  vsnprintf(msg, sizeof msg, f, ap);
  va_end(ap);
  dprintf(2, "attune-agent: cannot start: %s\n", msg);
  _exit(LAUNCH_FAILED);
}

void warnx_(const char *f, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, f);
  vsnprintf(msg, sizeof msg, f, ap);
  va_end(ap);
  dprintf(2, "attune-agent: %s\n", msg);
}

int pread_all(int fd, void *buf, size_t len, off_t off) {
  char *p = buf;
  while (len) {
    ssize_t n = pread(fd, p, len, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? (errno = EIO, -1) : -1;
    p += n; len -= (size_t)n; off += n;
  }
  return 0;
}

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n; len -= (size_t)n;
  }
  return 0;
}

void hex(const uint8_t *b, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) { out[2 * i] = d[b[i] >> 4]; out[2 * i + 1] = d[b[i] & 15]; }
  out[2 * n] = 0;
}

void fmt(char *buf, size_t size, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(buf, size, f, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= size) die("a path is too long (%d bytes): %.80s…", n, buf);
}

void close_inherited_fds(void) {
  if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
  /* Kernels before 5.9: every possible descriptor. */
  struct rlimit rl;
  long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
  if (max > 1 << 20) max = 1 << 20;
  for (long fd = 3; fd < max; fd++) close((int)fd);
}
