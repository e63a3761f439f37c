/*
 * attune-pipes.node: one Node-API function, pipe(), returning [readFd, writeFd] of a real pipe
 * (O_CLOEXEC on both ends).
 *
 * Why: Node/libuv give a child's stdio Unix socket pairs, not pipes, and Linux refuses to open a
 * socket through /proc/self/fd, so an action doing `echo x > /dev/stderr`, `tee /dev/stderr`,
 * `cat /dev/stdin` or open("/dev/stdout") fails with ENXIO under a Node parent. The Rust agent
 * (tokio) uses pipes; with these the agent does too (src/execution/os-pipes.ts).
 * Only libc and the Node-API symbols of the running executable are needed.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>

static napi_value make_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    int e = errno;
    napi_throw_error(env, e == EMFILE ? "EMFILE" : e == ENFILE ? "ENFILE" : "EPIPE2", strerror(e));
    return NULL;
  }
  napi_value arr, r, w;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_int32(env, fds[0], &r) != napi_ok ||
      napi_create_int32(env, fds[1], &w) != napi_ok || napi_set_element(env, arr, 0, r) != napi_ok ||
      napi_set_element(env, arr, 1, w) != napi_ok) {
    close(fds[0]);
    close(fds[1]);
    napi_throw_error(env, NULL, "attune-pipes: cannot build the result");
    return NULL;
  }
  return arr;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "pipe", NAPI_AUTO_LENGTH, make_pipe, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "pipe", fn) != napi_ok) return NULL;
  return exports;
}
