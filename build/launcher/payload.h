/* The payload of the one file: its table, and verified copies of its pieces. */
#ifndef ATTUNE_PAYLOAD_H
#define ATTUNE_PAYLOAD_H
#include "onefile.h"
#include <stddef.h>
#include <sys/types.h>

struct payload {
  int fd;               /* this executable, read-only */
  char path[4096];      /* how it was opened (for ATTUNE_AGENT_LAUNCHER_SELF) */
  off_t size;
  uint32_t count;
  struct onefile_entry entries[ONEFILE_MAX_PIECES];
  char id[33];          /* first 16 bytes of the table's SHA-256, hex: names the disk cache */
};

/* Opens this executable (/proc/self/exe, else AT_EXECFN), checks it is the file that runs, reads the table. */
void payload_open(struct payload *p);
const struct onefile_entry *payload_find(const struct payload *p, enum piece_kind kind, const char *name);
/* The piece's bytes in fresh anonymous memory, verified against its SHA-256 (munmap when done). */
void *payload_read(const struct payload *p, const struct onefile_entry *e);
/*
 * Copies the piece into `fd` (a memfd or a new file) through a small buffer, hashing exactly the
 * bytes written: returns 0, or -1 with errno on an I/O error; dies when the SHA-256 does not match.
 */
int payload_copy(const struct payload *p, const struct onefile_entry *e, int fd);
/* 1 when `fd`'s whole content (exactly e->size bytes) has e's SHA-256. */
int piece_matches(int fd, const struct onefile_entry *e);

#endif
