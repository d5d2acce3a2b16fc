/*
** config.c: the run configuration as dotted keys (see config.h).
**
** Entries live in one array in the order they were first added, which is
** file order for a YAML file (so "the first unknown key" is the first one a
** reader of the file would meet). Overrides keep the overridden entry's
** position. The key set is always a valid tree: no key is both a value and
** the parent of other keys. A later source's value replaces a whole
** subtree: putting "model" removes "model.layers". Putting "model.layers"
** below a value at "model" is an error, as is any such clash or a repeated
** key within one file: it is a typo, or it would silently drop the value.
**
** Strings handed out by the getters are never freed before the config: a
** replaced value moves to a pool that infsim_config_free() empties.
**
** Resolved values are jansson values kept per key in first-read order; they
** obey the same tree rule (the last read wins), so the nested JSON object
** can always be built.
*/
#include "infsim/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* Bounds on what one YAML file may produce, so that a hostile file (alias
 * loops, "billion laughs") fails with a message instead of exhausting memory. */
enum {
  CONFIG_MAX_DEPTH = 32,
  CONFIG_MAX_ENTRIES = 4096, /* far above any real config; keeps the clash checks cheap */
  CONFIG_MAX_KEY_BYTES = 1024,
  CONFIG_ORIGIN_BYTES = 4096 + 32, /* a path and ":LINE" */
  CONFIG_MAX_FILE_BYTES = 1 << 20, /* a real config is a few KiB */
};

typedef struct {
  char *key;
  char *value;
  char *origin; /* "c.yaml:12" or "--set" */
  bool used;
} config_entry;

typedef struct {
  char *key;
  json_t *value;
} config_resolved;

struct infsim_config {
  config_entry *entries;
  size_t n_entries, cap_entries;
  config_resolved *resolved;
  size_t n_resolved, cap_resolved;
  char **pool; /* strings that getters may have handed out */
  size_t n_pool, cap_pool;
};

/* ---- small helpers ---------------------------------------------------- */

static char *dup_string(const char *s) {
  size_t len = strlen(s);
  char *copy = malloc(len + 1);
  if (copy != NULL) memcpy(copy, s, len + 1);
  return copy;
}

/* Grows *items (of elem_bytes each) to hold at least need elements. */
static bool grow(void **items, size_t *cap, size_t need, size_t elem_bytes) {
  if (need <= *cap) return true;
  size_t next = *cap == 0 ? 16 : *cap * 2;
  while (next < need) next *= 2;
  void *p = realloc(*items, next * elem_bytes);
  if (p == NULL) return false;
  *items = p;
  *cap = next;
  return true;
}

/* True when key equals prefix or lies below it ("prefix.x"). */
static bool key_under(const char *key, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(key, prefix, n) == 0 && (key[n] == '\0' || key[n] == '.');
}

/* True when one key is the other or lies below it: they cannot coexist. */
static bool keys_clash(const char *a, const char *b) { return key_under(a, b) || key_under(b, a); }

/* Moves s into the pool, where it lives until infsim_config_free(). */
static bool pool_keep(infsim_config *cfg, char *s) {
  if (s == NULL) return true;
  if (!grow((void **)&cfg->pool, &cfg->cap_pool, cfg->n_pool + 1, sizeof *cfg->pool)) return false;
  cfg->pool[cfg->n_pool++] = s;
  return true;
}

static config_entry *find_entry(const infsim_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_entries; i++)
    if (strcmp(cfg->entries[i].key, key) == 0) return &cfg->entries[i];
  return NULL;
}

/* The first entry at or below key, or NULL. */
static const config_entry *find_subtree(const infsim_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_entries; i++)
    if (key_under(cfg->entries[i].key, key)) return &cfg->entries[i];
  return NULL;
}

/* A key is dot-separated non-empty segments of printable ASCII characters
 * other than '=' (which --set reserves) and blanks: keys are names, and
 * summary.json repeats them as JSON object keys. */
static bool key_is_valid(const char *key) {
  size_t len = strlen(key);
  if (len == 0 || len > CONFIG_MAX_KEY_BYTES || key[0] == '.' || key[len - 1] == '.') return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c <= ' ' || c == '=' || c >= 0x7f) return false;
    if (c == '.' && key[i + 1] == '.') return false;
  }
  return true;
}

/* True when s is valid UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF, RFC 3629): summary.json repeats values as JSON strings. A YAML
 * file is checked by libyaml; --set text comes from the command line. */
static bool utf8_is_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p != 0) {
    unsigned c = *p;
    int more;
    uint32_t cp, min;
    if (c < 0x80) {
      p++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      more = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      more = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      more = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    p++;
    for (int i = 0; i < more; i++, p++) {
      if ((*p & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (*p & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  }
  return true;
}

/* ---- lifecycle -------------------------------------------------------- */

infsim_config *infsim_config_new(void) { return calloc(1, sizeof(infsim_config)); }

static void entry_free(config_entry *e) {
  free(e->key);
  free(e->value);
  free(e->origin);
}

void infsim_config_free(infsim_config *cfg) {
  if (cfg == NULL) return;
  for (size_t i = 0; i < cfg->n_entries; i++) entry_free(&cfg->entries[i]);
  for (size_t i = 0; i < cfg->n_resolved; i++) {
    free(cfg->resolved[i].key);
    json_decref(cfg->resolved[i].value);
  }
  for (size_t i = 0; i < cfg->n_pool; i++) free(cfg->pool[i]);
  free(cfg->entries);
  free(cfg->resolved);
  free(cfg->pool);
  free(cfg);
}

/* ---- adding entries --------------------------------------------------- */

/* The entry holding a value at a strict prefix of key ("model" for
 * "model.layers"), or NULL. */
static const config_entry *value_above(const infsim_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_entries; i++)
    if (strcmp(cfg->entries[i].key, key) != 0 && key_under(key, cfg->entries[i].key)) return &cfg->entries[i];
  return NULL;
}

/* A later source may replace a mapping with a value ("model=llama2-13b"
 * over `model: {layers: 2}`: the new value says everything), but a key
 * below a value ("model.layers=2" over `model: tiny`) would silently drop
 * the value's meaning (tiny's shape), so it is the clash a single file
 * refuses too. */
static infsim_status refuse_below_value(const infsim_config *cfg, const char *key, const char *origin,
                                        infsim_error *err) {
  const config_entry *above = value_above(cfg, key);
  if (above == NULL) return INFSIM_OK;
  return infsim_fail(err, INFSIM_EINPUT,
                     "%s: key '%s' clashes with '%s' at %s (a key is either a value or a mapping; set '%s' itself "
                     "to replace it)",
                     origin, key, above->key, above->origin, above->key);
}

/* Adds or replaces one entry. The caller has validated key and refused a
 * key below a value. */
static infsim_status put_entry(infsim_config *cfg, const char *key, const char *value, const char *origin,
                               infsim_error *err) {
  config_entry fresh = {0};
  fresh.key = dup_string(key);
  fresh.value = dup_string(value);
  fresh.origin = dup_string(origin);
  if (fresh.key == NULL || fresh.value == NULL || fresh.origin == NULL ||
      !grow((void **)&cfg->entries, &cfg->cap_entries, cfg->n_entries + 1, sizeof *cfg->entries) ||
      !grow((void **)&cfg->pool, &cfg->cap_pool, cfg->n_pool + cfg->n_entries + 1, sizeof *cfg->pool)) {
    entry_free(&fresh);
    return infsim_fail(err, INFSIM_ENOMEM, "%s: %s: out of memory", origin, key);
  }
  /* Replace in place when the key exists; drop clashing subtrees and
   * values. Retired values go to the pool (grown above, so keeping them
   * cannot fail). */
  size_t slot = SIZE_MAX;
  size_t kept = 0;
  for (size_t i = 0; i < cfg->n_entries; i++) {
    config_entry *e = &cfg->entries[i];
    bool same = strcmp(e->key, key) == 0;
    if (!same && !keys_clash(e->key, key)) {
      cfg->entries[kept++] = *e;
      continue;
    }
    bool ok = pool_keep(cfg, e->value);
    assert(ok);
    (void)ok;
    e->value = NULL;
    entry_free(e);
    if (same) slot = kept++; /* the replaced entry's position is reused */
  }
  if (slot == SIZE_MAX) slot = kept++;
  cfg->n_entries = kept;
  cfg->entries[slot] = fresh;
  return INFSIM_OK;
}

infsim_status infsim_config_put(infsim_config *cfg, const char *key, const char *value, const char *origin,
                                infsim_error *err) {
  assert(cfg != NULL && key != NULL && value != NULL && origin != NULL);
  if (!key_is_valid(key)) return infsim_fail(err, INFSIM_EINPUT, "%s: bad key '%.64s'", origin, key);
  if (!utf8_is_valid(value))
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s: value is not valid UTF-8", origin, key);
  infsim_status st = refuse_below_value(cfg, key, origin, err);
  return st != INFSIM_OK ? st : put_entry(cfg, key, value, origin, err);
}

infsim_status infsim_config_set(infsim_config *cfg, const char *assignment, infsim_error *err) {
  assert(cfg != NULL && assignment != NULL);
  const char *eq = strchr(assignment, '=');
  const char *k0 = assignment, *k1 = eq != NULL ? eq : assignment;
  while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
  while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
  if (eq == NULL || k1 == k0)
    return infsim_fail(err, INFSIM_EINPUT, "--set: expected key=value, got '%s'", assignment);
  size_t key_len = (size_t)(k1 - k0);
  if (key_len > CONFIG_MAX_KEY_BYTES) return infsim_fail(err, INFSIM_EINPUT, "--set: key too long");
  char key[CONFIG_MAX_KEY_BYTES + 1];
  memcpy(key, k0, key_len);
  key[key_len] = '\0';
  const char *v0 = eq + 1, *v1 = eq + strlen(eq);
  while (v0 < v1 && isspace((unsigned char)*v0)) v0++;
  while (v1 > v0 && isspace((unsigned char)v1[-1])) v1--;
  char *value = malloc((size_t)(v1 - v0) + 1);
  if (value == NULL) return infsim_fail(err, INFSIM_ENOMEM, "--set: out of memory");
  memcpy(value, v0, (size_t)(v1 - v0));
  value[v1 - v0] = '\0';
  infsim_status st = infsim_config_put(cfg, key, value, "--set", err);
  free(value);
  return st;
}

/* ---- YAML ------------------------------------------------------------- */

/* One flattened entry of a file; a mapping's key is kept too (value NULL),
 * so that a key given twice with mappings under it ("model:" twice at the
 * top level) is caught like any other repeated key. */
typedef struct {
  char *key, *value;
  int line;
} yaml_item;

/* One file's flattened entries, collected before any reaches the config so
 * that a failing file changes nothing. */
typedef struct {
  const char *path;
  yaml_document_t *doc;
  yaml_item *items;
  size_t n, cap;
} yaml_walk;

static void walk_free(yaml_walk *w) {
  for (size_t i = 0; i < w->n; i++) {
    free(w->items[i].key);
    free(w->items[i].value);
  }
  free(w->items);
}

static int node_line(const yaml_node_t *node) { return (int)node->start_mark.line + 1; }

/* Adds one flattened entry (value NULL: a mapping). Repeats and clashes are
 * found afterwards, all at once (check_items). Every item counts against
 * CONFIG_MAX_ENTRIES, mappings too, which also bounds the walk: aliases can
 * make a small file name exponentially many nodes. */
static infsim_status walk_add(yaml_walk *w, const char *key, char *value, int line, infsim_error *err) {
  if (w->n >= CONFIG_MAX_ENTRIES) {
    free(value);
    return infsim_fail(err, INFSIM_EINPUT, "%s:%d: more than %d keys (aliases expanded)", w->path, line,
                       CONFIG_MAX_ENTRIES);
  }
  char *k = dup_string(key);
  if (k == NULL || !grow((void **)&w->items, &w->cap, w->n + 1, sizeof *w->items)) {
    free(k);
    free(value);
    return infsim_fail(err, INFSIM_ENOMEM, "%s:%d: out of memory", w->path, line);
  }
  w->items[w->n++] = (yaml_item){k, value, line};
  return INFSIM_OK;
}

/* Key order in which '.' sorts before every other character, so that the
 * keys below K ("K.x") follow K and its repeats directly. */
static int key_order(const char *a, const char *b) {
  for (;; a++, b++) {
    unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca == cb) {
      if (ca == '\0') return 0;
      continue;
    }
    if (ca == '\0' || cb == '\0') return ca == '\0' ? -1 : 1;
    if (ca == '.' || cb == '.') return ca == '.' ? -1 : 1;
    return ca < cb ? -1 : 1;
  }
}

static int item_order(const void *x, const void *y) {
  const yaml_item *a = *(const yaml_item *const *)x, *b = *(const yaml_item *const *)y;
  int c = key_order(a->key, b->key);
  if (c != 0) return c;
  return (a->line > b->line) - (a->line < b->line);
}

/* Rejects a key given twice, or a key that is a value and also has keys
 * below it. Sorting puts every such pair side by side, so one pass finds
 * them in O(n log n); of several, the one whose later line comes first in
 * the file is reported, as a reader would meet it. */
static infsim_status check_items(const yaml_walk *w, infsim_error *err) {
  if (w->n < 2) return INFSIM_OK;
  const yaml_item **order = malloc(w->n * sizeof *order);
  if (order == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", w->path);
  for (size_t i = 0; i < w->n; i++) order[i] = &w->items[i];
  qsort(order, w->n, sizeof *order, item_order);
  const yaml_item *first = NULL, *later = NULL;
  bool same = false;
  for (size_t i = 0; i + 1 < w->n; i++) {
    const yaml_item *a = order[i], *b = order[i + 1];
    bool dup = strcmp(a->key, b->key) == 0;
    bool clash = !dup && a->value != NULL && key_under(b->key, a->key);
    if (!dup && !clash) continue;
    const yaml_item *e = a->line <= b->line ? a : b, *l = a->line <= b->line ? b : a;
    if (later == NULL || l->line < later->line) first = e, later = l, same = dup;
  }
  free(order);
  if (later == NULL) return INFSIM_OK;
  if (same)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%d: duplicate key '%s' (first at line %d)", w->path, later->line,
                       later->key, first->line);
  return infsim_fail(err, INFSIM_EINPUT, "%s:%d: key '%s' clashes with '%s' at line %d (a key is either a value "
                     "or a mapping)", w->path, later->line, later->key, first->key, first->line);
}

/* A sequence of scalars as one comma-joined value; the items may not hold
 * commas themselves, since readers split the value on them. */
static infsim_status join_sequence(yaml_walk *w, const char *key, yaml_node_t *seq, char **out, infsim_error *err) {
  size_t bytes = 1;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(w->doc, *it);
    assert(item != NULL);
    if (item->type != YAML_SCALAR_NODE)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s: a sequence may hold only scalars, not %s", w->path,
                         node_line(item), key, item->type == YAML_MAPPING_NODE ? "mappings" : "sequences");
    if (memchr(item->data.scalar.value, ',', item->data.scalar.length) != NULL)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s: sequence item '%.64s' may not contain a comma", w->path,
                         node_line(item), key, (const char *)item->data.scalar.value);
    bytes += item->data.scalar.length + 1;
  }
  char *joined = malloc(bytes);
  if (joined == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", w->path);
  size_t at = 0;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(w->doc, *it);
    if (at > 0) joined[at++] = ',';
    memcpy(joined + at, item->data.scalar.value, item->data.scalar.length);
    at += item->data.scalar.length;
  }
  joined[at] = '\0';
  *out = joined;
  return INFSIM_OK;
}

/* A scalar's text; a NUL inside it (YAML allows "\0") cannot be a C string. */
static infsim_status scalar_text(yaml_walk *w, const yaml_node_t *v, const char *key, char **out, infsim_error *err) {
  if (memchr(v->data.scalar.value, '\0', v->data.scalar.length) != NULL)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s: NUL byte in value", w->path, node_line(v), key);
  char *value = malloc(v->data.scalar.length + 1);
  if (value == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", w->path);
  memcpy(value, v->data.scalar.value, v->data.scalar.length);
  value[v->data.scalar.length] = '\0';
  *out = value;
  return INFSIM_OK;
}

static infsim_status walk_mapping(yaml_walk *w, yaml_node_t *map, const char *prefix, int depth,
                                  infsim_error *err) {
  if (depth > CONFIG_MAX_DEPTH)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s: nested deeper than %d levels", w->path, node_line(map),
                       prefix, CONFIG_MAX_DEPTH);
  infsim_status st = INFSIM_OK;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
    assert(k != NULL && v != NULL);
    if (k->type != YAML_SCALAR_NODE)
      return infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s%skeys must be plain scalars", w->path, node_line(k), prefix,
                         prefix[0] != '\0' ? ": " : "");
    char key[CONFIG_MAX_KEY_BYTES + 1];
    int len = snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] != '\0' ? "." : "",
                       (const char *)k->data.scalar.value);
    if (len < 0 || (size_t)len >= sizeof key || strlen(key) != (size_t)len ||
        k->data.scalar.length != strlen((const char *)k->data.scalar.value) || !key_is_valid(key))
      return infsim_fail(err, INFSIM_EINPUT, "%s:%d: bad key '%.64s' (keys are dot-separated names without blanks "
                         "or '=')", w->path, node_line(k), key);
    switch (v->type) {
    case YAML_MAPPING_NODE:
      st = walk_add(w, key, NULL, node_line(k), err);
      if (st == INFSIM_OK) st = walk_mapping(w, v, key, depth + 1, err);
      break;
    case YAML_SEQUENCE_NODE: {
      char *joined = NULL;
      st = join_sequence(w, key, v, &joined, err);
      if (st == INFSIM_OK) st = walk_add(w, key, joined, node_line(k), err);
      break;
    }
    case YAML_SCALAR_NODE: {
      /* An empty plain scalar (`key:`) is the empty string. */
      char *value = NULL;
      st = scalar_text(w, v, key, &value, err);
      if (st == INFSIM_OK) st = walk_add(w, key, value, node_line(k), err);
      break;
    }
    default:
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%d: %s: unsupported YAML node", w->path, node_line(v), key);
      break;
    }
    if (st != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

static infsim_status yaml_syntax_error(const yaml_parser_t *parser, const char *path, infsim_error *err) {
  if (parser->error == YAML_MEMORY_ERROR) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  const char *problem = parser->problem != NULL ? parser->problem : "malformed YAML";
  if (parser->context != NULL)
    return infsim_fail(err, INFSIM_EINPUT, "%s:%zu: syntax error: %s (%s at line %zu)", path,
                       parser->problem_mark.line + 1, problem, parser->context, parser->context_mark.line + 1);
  return infsim_fail(err, INFSIM_EINPUT, "%s:%zu: syntax error: %s", path, parser->problem_mark.line + 1, problem);
}

/* Parses one YAML document from the parser's input and adds its entries. */
static infsim_status load_parsed(infsim_config *cfg, yaml_parser_t *parser, const char *path, infsim_error *err) {
  yaml_document_t doc;
  infsim_status st = INFSIM_OK;
  yaml_walk w = {path, &doc, NULL, 0, 0};
  if (!yaml_parser_load(parser, &doc)) return yaml_syntax_error(parser, path, err);
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  /* An empty file (or one of comments) is an empty config: all defaults. */
  if (root != NULL && root->type != YAML_MAPPING_NODE)
    st = infsim_fail(err, INFSIM_EINPUT, "%s:%d: the top level must be a mapping of keys to values", path,
                     node_line(root));
  if (st == INFSIM_OK && root != NULL) st = walk_mapping(&w, root, "", 0, err);
  if (st == INFSIM_OK) st = check_items(&w, err);
  if (st == INFSIM_OK && root != NULL) {
    /* One document a file: a second one would be silently ignored. */
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next)) {
      st = yaml_syntax_error(parser, path, err);
    } else {
      yaml_node_t *extra = yaml_document_get_root_node(&next);
      if (extra != NULL)
        st = infsim_fail(err, INFSIM_EINPUT, "%s:%d: more than one YAML document", path, node_line(extra));
      yaml_document_delete(&next);
    }
  }
  yaml_document_delete(&doc);
  if (st == INFSIM_OK && cfg->n_entries == 0) {
    /* Nothing to replace (the usual first file): the file's own keys were
     * checked above, so they go in as they are, in O(n) not O(n^2). */
    size_t values = 0;
    for (size_t i = 0; i < w.n; i++) values += w.items[i].value != NULL;
    if (!grow((void **)&cfg->entries, &cfg->cap_entries, values, sizeof *cfg->entries))
      st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; st == INFSIM_OK && i < w.n; i++) {
      if (w.items[i].value == NULL) continue;
      char origin[CONFIG_ORIGIN_BYTES];
      snprintf(origin, sizeof origin, "%s:%d", path, w.items[i].line);
      config_entry e = {w.items[i].key, w.items[i].value, dup_string(origin), false};
      if (e.origin == NULL) {
        st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
        break;
      }
      cfg->entries[cfg->n_entries++] = e;
      w.items[i].key = w.items[i].value = NULL; /* moved into the config */
    }
  } else {
    /* Every key is checked before any goes in, so a refused file adds nothing. */
    for (size_t i = 0; st == INFSIM_OK && i < w.n; i++) {
      if (w.items[i].value == NULL) continue;
      char origin[CONFIG_ORIGIN_BYTES];
      snprintf(origin, sizeof origin, "%s:%d", path, w.items[i].line);
      st = refuse_below_value(cfg, w.items[i].key, origin, err);
    }
    for (size_t i = 0; st == INFSIM_OK && i < w.n; i++) {
      if (w.items[i].value == NULL) continue;
      char origin[CONFIG_ORIGIN_BYTES];
      snprintf(origin, sizeof origin, "%s:%d", path, w.items[i].line);
      st = put_entry(cfg, w.items[i].key, w.items[i].value, origin, err);
    }
  }
  walk_free(&w);
  return st;
}

/* A tag (`!!int 5`, `!!str x`, `!foo x`) asks for a type or meaning that
 * this reader does not give, and libyaml's document API cannot tell an
 * explicit `!!str` from no tag, so one pass over the events refuses every
 * explicit tag before the document is loaded. */
static infsim_status refuse_tags(const char *name, const char *text, size_t len, infsim_error *err) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  infsim_status st = INFSIM_OK;
  for (bool done = false; !done && st == INFSIM_OK;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      st = yaml_syntax_error(&parser, name, err);
      break;
    }
    const yaml_char_t *tag = ev.type == YAML_SCALAR_EVENT           ? ev.data.scalar.tag
                             : ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.tag
                             : ev.type == YAML_MAPPING_START_EVENT  ? ev.data.mapping_start.tag
                                                                    : NULL;
    if (tag != NULL)
      st = infsim_fail(err, INFSIM_EINPUT, "%s:%zu: YAML tags are not supported ('%.64s'): write the plain value",
                       name, ev.start_mark.line + 1, (const char *)tag);
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return st;
}

infsim_status infsim_config_load_yaml_text(infsim_config *cfg, const char *name, const char *text, size_t len,
                                           infsim_error *err) {
  assert(cfg != NULL && name != NULL && (text != NULL || len == 0));
  if (text == NULL) text = "";
  infsim_status st = refuse_tags(name, text, len, err);
  if (st != INFSIM_OK) return st;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  st = load_parsed(cfg, &parser, name, err);
  yaml_parser_delete(&parser);
  return st;
}

infsim_status infsim_config_load_yaml(infsim_config *cfg, const char *path, infsim_error *err) {
  assert(cfg != NULL && path != NULL);
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) return infsim_fail(err, INFSIM_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  /* Read whole (configs are a few KiB), up to a bound, so that
   * `infsim run /dev/zero` fails at once instead of filling memory. */
  char *text = malloc(CONFIG_MAX_FILE_BYTES + 1);
  if (text == NULL) {
    fclose(fp);
    return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", path);
  }
  size_t len = fread(text, 1, CONFIG_MAX_FILE_BYTES + 1, fp);
  infsim_status st = INFSIM_OK;
  if (ferror(fp)) st = infsim_fail(err, INFSIM_EINPUT, "%s: cannot read: %s", path, strerror(errno));
  else if (len > CONFIG_MAX_FILE_BYTES)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: larger than %d bytes (not a config file?)", path, CONFIG_MAX_FILE_BYTES);
  fclose(fp);
  if (st == INFSIM_OK) st = infsim_config_load_yaml_text(cfg, path, text, len, err);
  free(text);
  return st;
}

/* ---- reading ---------------------------------------------------------- */

bool infsim_config_has(const infsim_config *cfg, const char *key) { return find_subtree(cfg, key) != NULL; }

bool infsim_config_has_value(const infsim_config *cfg, const char *key) { return find_entry(cfg, key) != NULL; }

const char *infsim_config_origin(const infsim_config *cfg, const char *key) {
  const config_entry *e = find_entry(cfg, key);
  if (e == NULL) e = find_subtree(cfg, key);
  return e != NULL ? e->origin : "default";
}

void infsim_config_mark_used(infsim_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_entries; i++)
    if (key_under(cfg->entries[i].key, key)) cfg->entries[i].used = true;
}

const char *infsim_config_next_key(const infsim_config *cfg, const char *prefix, size_t *pos) {
  assert(pos != NULL);
  for (; *pos < cfg->n_entries; (*pos)++) {
    const char *key = cfg->entries[*pos].key;
    if (prefix == NULL || prefix[0] == '\0' || key_under(key, prefix)) {
      (*pos)++;
      return key;
    }
  }
  return NULL;
}

infsim_status infsim_config_fail(const infsim_config *cfg, const char *key, infsim_error *err, const char *fmt,
                                 ...) {
  char detail[INFSIM_ERROR_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  if (cfg == NULL) return infsim_fail(err, INFSIM_EINPUT, "%s: %s", key, detail);
  return infsim_fail(err, INFSIM_EINPUT, "%s: %s: %s", infsim_config_origin(cfg, key), key, detail);
}

/* Records key's resolved value (stealing the reference); the last read of a
 * key, or of a clashing one, wins. */
static infsim_status record(infsim_config *cfg, const char *key, json_t *value, infsim_error *err) {
  if (value == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", key);
  size_t kept = 0;
  for (size_t i = 0; i < cfg->n_resolved; i++) {
    config_resolved *r = &cfg->resolved[i];
    if (strcmp(r->key, key) == 0) {
      json_decref(r->value);
      r->value = value;
      return INFSIM_OK;
    }
    if (keys_clash(r->key, key)) {
      free(r->key);
      json_decref(r->value);
      continue;
    }
    cfg->resolved[kept++] = *r;
  }
  cfg->n_resolved = kept;
  char *k = dup_string(key);
  if (k == NULL || !grow((void **)&cfg->resolved, &cfg->cap_resolved, cfg->n_resolved + 1, sizeof *cfg->resolved)) {
    free(k);
    json_decref(value);
    return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", key);
  }
  cfg->resolved[cfg->n_resolved++] = (config_resolved){k, value};
  return INFSIM_OK;
}

/* The entry for key, or NULL when absent; fails when key names a mapping
 * where a value was expected. */
static infsim_status lookup(infsim_config *cfg, const char *key, const char *expected, config_entry **out,
                            infsim_error *err) {
  *out = find_entry(cfg, key);
  if (*out == NULL) {
    const config_entry *child = find_subtree(cfg, key);
    if (child != NULL)
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected %s, got a mapping", child->origin, key, expected);
  }
  return INFSIM_OK;
}

/* Whole-string parse of a decimal integer ("42", "-7"), or of a number
 * that is exactly an integer ("1e6", "2.0"). Hexadecimal, blanks, inf and
 * nan are refused. */
static bool parse_int64(const char *s, int64_t *out) {
  if (s[0] == '\0' || isspace((unsigned char)s[0]) || strpbrk(s, "xXnN") != NULL) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end == '\0') {
    if (errno == ERANGE) return false;
    *out = (int64_t)v;
    return true;
  }
  errno = 0;
  double d = strtod(s, &end);
  /* 2^63 is exactly representable; every double below it is in range. */
  if (*end != '\0' || errno == ERANGE || !isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
      d >= 9223372036854775808.0)
    return false;
  *out = (int64_t)d;
  return true;
}

static bool parse_double(const char *s, double *out) {
  if (s[0] == '\0' || isspace((unsigned char)s[0]) || strpbrk(s, "xXnN") != NULL) return false;
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (*end != '\0' || !isfinite(d)) return false;
  if (errno == ERANGE && fabs(d) > 1.0) return false; /* overflow; underflow to ~0 is fine */
  *out = d;
  return true;
}

static bool equal_nocase(const char *a, const char *b) {
  for (; *a != '\0' && *b != '\0'; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
  return *a == *b;
}

infsim_status infsim_config_int(infsim_config *cfg, const char *key, int64_t def, int64_t min, int64_t max,
                                int64_t *out, infsim_error *err) {
  assert(cfg != NULL && key != NULL && out != NULL && min <= max && def >= min && def <= max);
  char expected[128];
  snprintf(expected, sizeof expected, "an integer in [%" PRId64 ", %" PRId64 "]", min, max);
  config_entry *e;
  infsim_status st = lookup(cfg, key, expected, &e, err);
  if (st != INFSIM_OK) return st;
  int64_t v = def;
  if (e != NULL) {
    if (!parse_int64(e->value, &v) || v < min || v > max)
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected %s, got '%s'", e->origin, key, expected, e->value);
    e->used = true;
  }
  st = record(cfg, key, json_integer((json_int_t)v), err);
  if (st == INFSIM_OK) *out = v;
  return st;
}

infsim_status infsim_config_double(infsim_config *cfg, const char *key, double def, double min, double max,
                                   double *out, infsim_error *err) {
  assert(cfg != NULL && key != NULL && out != NULL && min <= max && def >= min && def <= max && isfinite(def));
  char expected[128];
  snprintf(expected, sizeof expected, "a number in [%g, %g]", min, max);
  config_entry *e;
  infsim_status st = lookup(cfg, key, expected, &e, err);
  if (st != INFSIM_OK) return st;
  double v = def;
  if (e != NULL) {
    if (!parse_double(e->value, &v) || v < min || v > max)
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected %s, got '%s'", e->origin, key, expected, e->value);
    e->used = true;
  }
  st = record(cfg, key, json_real(v), err);
  if (st == INFSIM_OK) *out = v;
  return st;
}

infsim_status infsim_config_bool(infsim_config *cfg, const char *key, bool def, bool *out, infsim_error *err) {
  assert(cfg != NULL && key != NULL && out != NULL);
  static const char *const k_true[] = {"true", "yes", "on", "1"};
  static const char *const k_false[] = {"false", "no", "off", "0"};
  const char *expected = "a boolean (true/false, yes/no, on/off, 1/0)";
  config_entry *e;
  infsim_status st = lookup(cfg, key, expected, &e, err);
  if (st != INFSIM_OK) return st;
  bool v = def;
  if (e != NULL) {
    int found = -1;
    for (size_t i = 0; i < sizeof k_true / sizeof k_true[0]; i++) {
      if (equal_nocase(e->value, k_true[i])) found = 1;
      if (equal_nocase(e->value, k_false[i])) found = 0;
    }
    if (found < 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected %s, got '%s'", e->origin, key, expected, e->value);
    v = found == 1;
    e->used = true;
  }
  st = record(cfg, key, json_boolean(v), err);
  if (st == INFSIM_OK) *out = v;
  return st;
}

infsim_status infsim_config_string(infsim_config *cfg, const char *key, const char *def, const char **out,
                                   infsim_error *err) {
  assert(cfg != NULL && key != NULL && def != NULL && out != NULL);
  config_entry *e;
  infsim_status st = lookup(cfg, key, "a value", &e, err);
  if (st != INFSIM_OK) return st;
  const char *v;
  if (e != NULL) {
    e->used = true;
    v = e->value; /* replaced values move to the pool, so v outlives overrides */
  } else {
    char *copy = dup_string(def);
    if (copy == NULL || !pool_keep(cfg, copy)) {
      free(copy);
      return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", key);
    }
    v = copy;
  }
  st = record(cfg, key, json_string(v), err);
  if (st == INFSIM_OK) *out = v;
  return st;
}

infsim_status infsim_config_enum(infsim_config *cfg, const char *key, const char *def,
                                 const char *const *choices, int *out, infsim_error *err) {
  assert(cfg != NULL && key != NULL && def != NULL && choices != NULL && out != NULL);
  char expected[INFSIM_ERROR_MSG_BYTES / 2] = "one of ";
  int def_index = -1;
  for (int i = 0; choices[i] != NULL; i++) {
    if (strcmp(choices[i], def) == 0) def_index = i;
    size_t at = strlen(expected);
    snprintf(expected + at, sizeof expected - at, "%s%s", i > 0 ? ", " : "", choices[i]);
  }
  assert(def_index >= 0 && "the default must be one of the choices");
  config_entry *e;
  infsim_status st = lookup(cfg, key, expected, &e, err);
  if (st != INFSIM_OK) return st;
  int v = def_index;
  if (e != NULL) {
    v = -1;
    for (int i = 0; choices[i] != NULL; i++)
      if (strcmp(choices[i], e->value) == 0) v = i;
    if (v < 0)
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: expected %s, got '%s'", e->origin, key, expected, e->value);
    e->used = true;
  }
  st = record(cfg, key, json_string(choices[v]), err);
  if (st == INFSIM_OK) *out = v;
  return st;
}

void infsim_config_forget(infsim_config *cfg, const char *key) {
  size_t kept = 0;
  for (size_t i = 0; i < cfg->n_resolved; i++) {
    config_resolved *r = &cfg->resolved[i];
    if (key_under(r->key, key)) {
      free(r->key);
      json_decref(r->value);
      continue;
    }
    cfg->resolved[kept++] = *r;
  }
  cfg->n_resolved = kept;
}

infsim_status infsim_config_check_unused_below(const infsim_config *cfg, const char *prefix, infsim_error *err) {
  for (size_t i = 0; i < cfg->n_entries; i++)
    if (!cfg->entries[i].used && (prefix == NULL || key_under(cfg->entries[i].key, prefix)))
      return infsim_fail(err, INFSIM_EINPUT, "%s: unknown key '%s'", cfg->entries[i].origin, cfg->entries[i].key);
  return INFSIM_OK;
}

infsim_status infsim_config_check_unused(const infsim_config *cfg, infsim_error *err) {
  return infsim_config_check_unused_below(cfg, NULL, err);
}

json_t *infsim_config_resolved_json(const infsim_config *cfg) {
  json_t *root = json_object();
  if (root == NULL) return NULL;
  for (size_t i = 0; i < cfg->n_resolved; i++) {
    const config_resolved *r = &cfg->resolved[i];
    char path[CONFIG_MAX_KEY_BYTES + 1];
    size_t len = strlen(r->key);
    assert(len < sizeof path);
    memcpy(path, r->key, len + 1);
    json_t *obj = root;
    char *seg = path;
    for (char *dot = strchr(seg, '.'); dot != NULL; seg = dot + 1, dot = strchr(seg, '.')) {
      *dot = '\0';
      json_t *child = json_object_get(obj, seg);
      if (child == NULL) {
        child = json_object();
        if (child == NULL || json_object_set_new(obj, seg, child) != 0) {
          json_decref(root);
          return NULL;
        }
      }
      /* record() keeps resolved keys a tree, so a parent is an object. */
      assert(json_is_object(child));
      obj = child;
    }
    if (json_object_set(obj, seg, r->value) != 0) {
      json_decref(root);
      return NULL;
    }
  }
  return root;
}
