/*
** sqlpages.c: SQLite database files written page by page (sqlpages.h).
**
** A table is a b-tree of pages: leaves (type 13) hold the rows as cells
** (payload length, rowid, record), interior pages (type 5) hold a child
** page and the largest rowid under it per cell, and the right-most child
** in the header. Rows come in rowid order, so leaves fill left to right:
** each is written once full, and the interior levels are built from the
** list of (page, largest rowid) once the table ends. Page 1 (the header
** and the sqlite_schema leaf) is written last, when the root pages are
** known. Page numbers are the order pages are written in, from 2.
*/
#include "infsim/sqlpages.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  PAGE_BYTES = 4096,
  HEADER_BYTES = 100,            /* the database header, on page 1 */
  LEAF_HEADER = 8,               /* b-tree page header of a leaf */
  INTERIOR_HEADER = 12,          /* ... and of an interior page (right-most child) */
  MAX_LOCAL = PAGE_BYTES - 35,   /* the most payload a table leaf cell holds without overflow */
  MAX_TABLES = 8,
  MAX_COLUMNS = 64,              /* a row's serial types fit in infsim_sqlrow's header */
  BUFFER_PAGES = 64,             /* pages written per write() */
  LEAF_TABLE = 13,
  INTERIOR_TABLE = 5,
};

typedef struct {
  uint32_t page;
  int64_t max_rowid;
} child;

typedef struct {
  char *name;
  char *sql;
  uint32_t root;
} table_entry;

struct infsim_sqlpages {
  char *path;
  FILE *f;
  uint32_t next_page; /* the number the next written page gets */
  uint8_t *buffer;    /* pages not yet written */
  int32_t buffered;
  /* the current table */
  bool in_table;
  int32_t columns;
  int64_t last_rowid;
  bool any_row;
  uint8_t leaf[PAGE_BYTES];
  int32_t cells;
  int32_t content; /* offset of the lowest cell in leaf */
  child *kids;     /* the pages of the level being built */
  int64_t n_kids, cap_kids;
  table_entry tables[MAX_TABLES];
  int32_t n_tables;
};

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* SQLite's varint: 7 bits a byte, high bit set on all but the last, the
 * ninth byte (if any) whole. Returns the bytes written. */
static int put_varint(uint8_t *p, uint64_t v) {
  if (v < 0x80) {
    p[0] = (uint8_t)v;
    return 1;
  }
  if (v < 0x4000) {
    p[0] = (uint8_t)((v >> 7) | 0x80);
    p[1] = (uint8_t)(v & 0x7f);
    return 2;
  }
  uint8_t tmp[10];
  int n = 0;
  if (v >> 56) {
    p[8] = (uint8_t)v;
    v >>= 8;
    for (int i = 7; i >= 0; i--) {
      p[i] = (uint8_t)((v & 0x7f) | 0x80);
      v >>= 7;
    }
    return 9;
  }
  do {
    tmp[n++] = (uint8_t)((v & 0x7f) | 0x80);
    v >>= 7;
  } while (v != 0);
  tmp[0] &= 0x7f;
  for (int i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
  return n;
}

static int varint_bytes(uint64_t v) {
  int n = 1;
  while (n < 9 && v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

void infsim_sqlrow_text(infsim_sqlrow *r, const char *text, int32_t bytes) {
  if (bytes < 0 || !infsim_sqlrow_room(r, bytes)) {
    r->too_big = 1;
    return;
  }
  r->header_bytes += put_varint(r->header + r->header_bytes, 13 + 2 * (uint64_t)bytes);
  memcpy(r->body + r->body_bytes, text, (size_t)bytes);
  r->body_bytes += bytes;
}

/* The record's bytes: header size varint, serial types, bodies. */
static int32_t record_bytes(const infsim_sqlrow *r, int32_t *size_varint) {
  int32_t with_self = r->header_bytes + 1; /* the size varint counts itself */
  if (with_self >= 0x80) with_self = r->header_bytes + varint_bytes((uint64_t)r->header_bytes + 2);
  *size_varint = with_self;
  return with_self + r->body_bytes;
}

static uint8_t *put_record(uint8_t *p, const infsim_sqlrow *r, int32_t size_varint) {
  p += put_varint(p, (uint64_t)size_varint);
  memcpy(p, r->header, (size_t)r->header_bytes);
  p += r->header_bytes;
  memcpy(p, r->body, (size_t)r->body_bytes);
  return p + r->body_bytes;
}

/* ---- pages --------------------------------------------------------------- */

static infsim_status io_fail(infsim_sqlpages *w, infsim_error *err) {
  return infsim_fail(err, INFSIM_EIO, "%s: write failed", w->path);
}

/* Appends a finished page (not page 1); returns its number, 0 on failure. */
static uint32_t emit_page(infsim_sqlpages *w, const uint8_t *page) {
  memcpy(w->buffer + (size_t)w->buffered * PAGE_BYTES, page, PAGE_BYTES);
  if (++w->buffered == BUFFER_PAGES) {
    if (fwrite(w->buffer, PAGE_BYTES, BUFFER_PAGES, w->f) != BUFFER_PAGES) return 0;
    w->buffered = 0;
  }
  return w->next_page++;
}

static bool add_kid(infsim_sqlpages *w, uint32_t page, int64_t max_rowid) {
  if (w->n_kids == w->cap_kids) {
    int64_t cap = w->cap_kids ? 2 * w->cap_kids : 256;
    child *k = realloc(w->kids, (size_t)cap * sizeof *k);
    if (k == NULL) return false;
    w->kids = k;
    w->cap_kids = cap;
  }
  w->kids[w->n_kids++] = (child){page, max_rowid};
  return true;
}

static void leaf_reset(infsim_sqlpages *w) {
  w->cells = 0;
  w->content = PAGE_BYTES;
}

/* Writes the current leaf (header at offset `at`: 100 on page 1). */
static void leaf_finish(uint8_t *page, int at, int32_t cells, int32_t content) {
  page[at] = LEAF_TABLE;
  put16(page + at + 1, 0); /* no freeblocks */
  put16(page + at + 3, (uint32_t)cells);
  put16(page + at + 5, (uint32_t)content); /* an empty page's is the page size */
  page[at + 7] = 0;                         /* no fragments */
}

static infsim_status flush_leaf(infsim_sqlpages *w, infsim_error *err) {
  leaf_finish(w->leaf, 0, w->cells, w->content);
  /* unused bytes between the cell pointers and the content: zeros, as SQLite leaves them */
  memset(w->leaf + LEAF_HEADER + 2 * w->cells, 0, (size_t)(w->content - LEAF_HEADER - 2 * w->cells));
  uint32_t page = emit_page(w, w->leaf);
  if (page == 0) return io_fail(w, err);
  if (!add_kid(w, page, w->last_rowid)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  leaf_reset(w);
  return INFSIM_OK;
}

/* Builds the interior levels over w->kids until one page is left: the
 * table's root. A page takes children while their cells fit; the last
 * page never has a lone child (it borrows one from the page before). */
static infsim_status build_interior(infsim_sqlpages *w, uint32_t *root, infsim_error *err) {
  uint8_t page[PAGE_BYTES];
  while (w->n_kids > 1) {
    /* group boundaries: starts[g] = first child of page g */
    int64_t n = w->n_kids, groups = 0;
    int64_t *starts = malloc((size_t)(n + 1) * sizeof *starts);
    if (starts == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    int64_t i = 0;
    while (i < n) {
      starts[groups++] = i;
      int32_t used = INTERIOR_HEADER; /* the first child is the right pointer until another comes */
      i++;
      while (i < n) {
        int32_t cell = 2 + 4 + varint_bytes((uint64_t)w->kids[i - 1].max_rowid);
        if (used + cell > PAGE_BYTES) break;
        used += cell;
        i++;
      }
    }
    if (groups > 1 && n - starts[groups - 1] == 1) starts[groups - 1]--;
    starts[groups] = n;
    int64_t out = 0;
    for (int64_t g = 0; g < groups; g++) {
      int64_t a = starts[g], b = starts[g + 1]; /* children a..b-1; b-1 is the right-most */
      int32_t cells = (int32_t)(b - 1 - a), content = PAGE_BYTES;
      memset(page, 0, PAGE_BYTES);
      for (int32_t c = 0; c < cells; c++) {
        uint8_t cell[13];
        put32(cell, w->kids[a + c].page);
        int len = 4 + put_varint(cell + 4, (uint64_t)w->kids[a + c].max_rowid);
        content -= len;
        memcpy(page + content, cell, (size_t)len);
        put16(page + INTERIOR_HEADER + 2 * c, (uint32_t)content);
      }
      page[0] = INTERIOR_TABLE;
      put16(page + 3, (uint32_t)cells);
      put16(page + 5, (uint32_t)content);
      put32(page + 8, w->kids[b - 1].page);
      uint32_t number = emit_page(w, page);
      if (number == 0) {
        free(starts);
        return io_fail(w, err);
      }
      /* this level's pages replace its children in place (out <= a) */
      w->kids[out++] = (child){number, w->kids[b - 1].max_rowid};
    }
    free(starts);
    w->n_kids = out;
  }
  *root = w->kids[0].page;
  return INFSIM_OK;
}

static infsim_status end_table(infsim_sqlpages *w, infsim_error *err) {
  if (!w->in_table) return INFSIM_OK;
  w->in_table = false;
  infsim_status st = INFSIM_OK;
  if (w->cells > 0 || w->n_kids == 0) st = flush_leaf(w, err); /* an empty table is one empty leaf */
  if (st == INFSIM_OK) st = build_interior(w, &w->tables[w->n_tables - 1].root, err);
  w->n_kids = 0;
  return st;
}

/* ---- the interface ------------------------------------------------------- */

static void sqlpages_free(infsim_sqlpages *w) {
  if (w == NULL) return;
  if (w->f != NULL) fclose(w->f);
  for (int32_t t = 0; t < w->n_tables; t++) {
    free(w->tables[t].name);
    free(w->tables[t].sql);
  }
  free(w->kids);
  free(w->buffer);
  free(w->path);
  free(w);
}

static char *copy_text(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c != NULL) memcpy(c, s, n);
  return c;
}

infsim_status infsim_sqlpages_open(const char *path, infsim_sqlpages **out, infsim_error *err) {
  infsim_sqlpages *w = calloc(1, sizeof *w);
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  w->path = copy_text(path);
  w->buffer = malloc((size_t)BUFFER_PAGES * PAGE_BYTES);
  if (w->path == NULL || w->buffer == NULL) {
    sqlpages_free(w);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  w->f = fopen(path, "wb");
  if (w->f == NULL) {
    sqlpages_free(w);
    return infsim_fail(err, INFSIM_EIO, "%s: cannot create database", path);
  }
  /* page 1 is written last: its place is kept with zeros */
  static const uint8_t zeros[PAGE_BYTES];
  if (fwrite(zeros, PAGE_BYTES, 1, w->f) != 1) {
    sqlpages_free(w);
    return infsim_fail(err, INFSIM_EIO, "%s: write failed", path);
  }
  w->next_page = 2;
  *out = w;
  return INFSIM_OK;
}

infsim_status infsim_sqlpages_table(infsim_sqlpages *w, const char *name, const char *create_sql, int32_t columns,
                                    infsim_error *err) {
  infsim_status st = end_table(w, err);
  if (st != INFSIM_OK) return st;
  if (w->n_tables == MAX_TABLES || columns < 1 || columns > MAX_COLUMNS)
    return infsim_fail(err, INFSIM_ERUN, "%s: table %s: too many tables or columns", w->path, name);
  table_entry *t = &w->tables[w->n_tables];
  t->name = copy_text(name);
  t->sql = copy_text(create_sql);
  if (t->name == NULL || t->sql == NULL) {
    free(t->name);
    free(t->sql);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  w->n_tables++;
  w->in_table = true;
  w->columns = columns;
  w->any_row = false;
  w->n_kids = 0;
  leaf_reset(w);
  return INFSIM_OK;
}

infsim_status infsim_sqlpages_append(infsim_sqlpages *w, int64_t rowid, const infsim_sqlrow *row, infsim_error *err) {
  if (!w->in_table || (w->any_row && rowid <= w->last_rowid))
    return infsim_fail(err, INFSIM_ERUN, "%s: rows out of rowid order", w->path);
  if (row->columns != w->columns || row->too_big)
    return infsim_fail(err, INFSIM_ERUN, "%s: a row of %d columns for %d, or too long for a page", w->path,
                       (int)row->columns, (int)w->columns);
  int32_t size_varint = 0;
  int32_t payload = record_bytes(row, &size_varint);
  if (payload > MAX_LOCAL)
    return infsim_fail(err, INFSIM_ERUN, "%s: a row of %d bytes needs overflow pages", w->path, (int)payload);
  int32_t len = varint_bytes((uint64_t)payload) + varint_bytes((uint64_t)rowid) + payload;
  if (w->content - len < LEAF_HEADER + 2 * (w->cells + 1)) {
    infsim_status st = flush_leaf(w, err);
    if (st != INFSIM_OK) return st;
  }
  w->content -= len;
  uint8_t *cell = w->leaf + w->content;
  cell += put_varint(cell, (uint64_t)payload);
  cell += put_varint(cell, (uint64_t)rowid);
  put_record(cell, row, size_varint);
  put16(w->leaf + LEAF_HEADER + 2 * w->cells, (uint32_t)w->content);
  w->cells++;
  w->last_rowid = rowid;
  w->any_row = true;
  return INFSIM_OK;
}

/* Page 1: the database header, then the sqlite_schema leaf, a row per
 * table (type, name, tbl_name, rootpage, sql). */
static infsim_status write_page1(infsim_sqlpages *w, int32_t user_version, infsim_error *err) {
  uint8_t page[PAGE_BYTES];
  memset(page, 0, sizeof page);
  memcpy(page, "SQLite format 3", 16);
  put16(page + 16, PAGE_BYTES);
  page[18] = 1; /* legacy (rollback journal) write and read versions */
  page[19] = 1;
  page[20] = 0; /* no reserved bytes per page */
  page[21] = 64;
  page[22] = 32;
  page[23] = 32;
  uint32_t pages = w->next_page - 1;
  put32(page + 24, 1);     /* file change counter */
  put32(page + 28, pages); /* database size, valid: the change counter equals offset 92 */
  put32(page + 40, 1);     /* schema cookie */
  put32(page + 44, 4);     /* schema format */
  put32(page + 56, 1);     /* UTF-8 */
  put32(page + 60, (uint32_t)user_version);
  put32(page + 92, 1);
  put32(page + 96, (uint32_t)sqlite3_libversion_number());
  int32_t content = PAGE_BYTES;
  for (int32_t t = 0; t < w->n_tables; t++) {
    const table_entry *e = &w->tables[t];
    int32_t name_bytes = (int32_t)strlen(e->name), sql_bytes = (int32_t)strlen(e->sql);
    if (20 + 9 * 5 + 2 * name_bytes + sql_bytes + 16 > PAGE_BYTES / 2)
      return infsim_fail(err, INFSIM_ERUN, "%s: table %s: schema text too long", w->path, e->name);
    infsim_sqlrow row;
    infsim_sqlrow_begin(&row);
    infsim_sqlrow_text(&row, "table", 5);
    infsim_sqlrow_text(&row, e->name, name_bytes);
    infsim_sqlrow_text(&row, e->name, name_bytes);
    infsim_sqlrow_int(&row, e->root);
    infsim_sqlrow_text(&row, e->sql, sql_bytes);
    int32_t size_varint = 0;
    int32_t payload = record_bytes(&row, &size_varint);
    uint8_t record[PAGE_BYTES];
    put_record(record, &row, size_varint);
    uint8_t head[18];
    int32_t h = put_varint(head, (uint64_t)payload);
    h += put_varint(head + h, (uint64_t)t + 1);
    if (content - h - payload < HEADER_BYTES + LEAF_HEADER + 2 * (t + 1))
      return infsim_fail(err, INFSIM_ERUN, "%s: the schema does not fit in page 1", w->path);
    content -= h + payload;
    memcpy(page + content, head, (size_t)h);
    memcpy(page + content + h, record, (size_t)payload);
    put16(page + HEADER_BYTES + LEAF_HEADER + 2 * t, (uint32_t)content);
  }
  leaf_finish(page, HEADER_BYTES, w->n_tables, content);
  if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(page, PAGE_BYTES, 1, w->f) != 1) return io_fail(w, err);
  return INFSIM_OK;
}

infsim_status infsim_sqlpages_close(infsim_sqlpages *w, int32_t user_version, infsim_error *err) {
  infsim_status st = end_table(w, err);
  if (st == INFSIM_OK && w->buffered > 0 &&
      fwrite(w->buffer, PAGE_BYTES, (size_t)w->buffered, w->f) != (size_t)w->buffered)
    st = io_fail(w, err);
  if (st == INFSIM_OK) st = write_page1(w, user_version, err);
  if (st == INFSIM_OK) {
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) st = io_fail(w, err);
  }
  sqlpages_free(w);
  return st;
}
