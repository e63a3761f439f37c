/*
 * The one-file layout, shared by the launcher (C) and build/onefile.ts (which writes it):
 *
 *   [launcher: static-pie ELF] [pad] [program: the Node SEA ELF, page-aligned] [pieces…] [table] [footer]
 *
 * The footer is the file's last 64 bytes; it locates the table of pieces and holds the table's
 * SHA-256, and each table entry holds its piece's offset, size and SHA-256. Integers are
 * little-endian. build/onefile.ts mirrors these sizes: change both together.
 */
#ifndef ATTUNE_ONEFILE_H
#define ATTUNE_ONEFILE_H
#include <stdint.h>

#define ONEFILE_MAGIC "ATTUNE-ONEFILE/1" /* 16 bytes, no NUL */
#define ONEFILE_FOOTER_SIZE 64
#define ONEFILE_ENTRY_SIZE 104
#define ONEFILE_MAX_PIECES 32
/* DT_NEEDED names of the program are replaced at build time by `@ATTUNE@<soname>@###…` (this many
 * bytes with the NUL): room for the path the launcher writes there at start. */
#define NEEDED_PLACEHOLDER_PREFIX "@ATTUNE@"
#define NEEDED_PLACEHOLDER_SIZE 256

enum piece_kind {
  PIECE_PROGRAM = 1, /* the Node SEA executable: mapped in place from this file, never copied */
  PIECE_INTERP = 2,  /* glibc's ld-linux-x86-64.so.2: loaded into anonymous memory by the launcher */
  PIECE_LIBRARY = 3, /* a DT_NEEDED library of the program (name = its soname) */
  PIECE_ADDON = 4,   /* attune-pipes.node, dlopen()ed by the agent */
  PIECE_NOTICE = 5,  /* licence notices, printed by `attune-agent --licenses` */
};

struct onefile_entry {
  char name[48]; /* NUL-padded */
  uint64_t offset;
  uint64_t size;
  uint8_t sha256[32];
  uint32_t kind;
  uint32_t reserved;
};

struct onefile_footer {
  char magic[16];
  uint64_t table_offset;
  uint32_t count;
  uint32_t reserved;
  uint8_t table_sha256[32];
};

_Static_assert(sizeof(struct onefile_entry) == ONEFILE_ENTRY_SIZE, "entry layout");
_Static_assert(sizeof(struct onefile_footer) == ONEFILE_FOOTER_SIZE, "footer layout");

#endif
