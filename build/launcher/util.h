/* Small helpers of the launcher: messages that name the problem and the fix, whole reads/writes. */
#ifndef ATTUNE_UTIL_H
#define ATTUNE_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit code for a launcher failure: 127 like "cannot execute", so a wrapper sees a failed start. */
#define LAUNCH_FAILED 127

__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void warnx_(const char *fmt, ...);
int pread_all(int fd, void *buf, size_t len, off_t off);
int write_all(int fd, const void *buf, size_t len);
void hex(const uint8_t *bytes, size_t n, char *out);
/* snprintf into buf; dies when it does not fit (paths are bounded by PATH_MAX anyway). */
__attribute__((format(printf, 3, 4))) void fmt(char *buf, size_t size, const char *f, ...);
/* close_range(3, ~0): the descriptors a caller left open never reach the agent nor its actions. */
void close_inherited_fds(void);

#endif
