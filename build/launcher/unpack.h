/* Where the program's libraries and the addon are taken from at start: memory or a per-uid disk cache. */
#ifndef ATTUNE_UNPACK_H
#define ATTUNE_UNPACK_H
#include "payload.h"

struct unpacked {
  const char *mode;                      /* "memory" or "disk" */
  char dir[4096];                        /* disk: the verified cache directory */
  char paths[ONEFILE_MAX_PIECES][4096];  /* per table entry: the path the dynamic loader opens, or "" */
  char reason[1024];                     /* why memory was not used (disk mode), for the error message */
};

/*
 * ATTUNE_AGENT_UNPACK=auto (default): sealed memfds, named /proc/self/fd/N, so nothing is written
 * anywhere; without /proc (or memfd_create) a per-uid cache directory. `memory` or `disk` forces one.
 */
void unpack(const struct payload *p, struct unpacked *u);

#endif
