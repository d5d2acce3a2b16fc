/*
** config.h: the run configuration as dotted keys, with typed getters.
**
** A YAML file is flattened into entries "scheduler.max_batch_size" -> "64",
** each remembering the file and line it came from; `--set key=value`
** entries override them (origin "--set"). A sequence of scalars flattens
** to one entry whose value joins the items with commas ("1,2,3").
**
** Modules read their keys through the typed getters, which parse and range
** check the value, mark the entry used, and record the resolved value
** (the default when the key is absent) so that summary.json can print the
** whole resolved config. After every module has read its keys,
** infsim_config_check_unused() reports the first key nobody read: unknown
** keys are errors. Every error message names file:line and the key.
*/
#ifndef INFSIM_CONFIG_H
#define INFSIM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "infsim/status.h"

typedef struct infsim_config infsim_config;

infsim_config *infsim_config_new(void);
void infsim_config_free(infsim_config *cfg);

/* Flattens a YAML file (a mapping at the top; an empty file is an empty
 * config) into entries. Entries from a later file or --set replace earlier
 * ones with the same key, and a value replaces a whole subtree: "model"
 * replaces "model.layers". A key below an earlier value ("model.layers"
 * after `model: tiny`) is a clash, as in one file: it fails naming both
 * origins, and the file or --set adds nothing. Within one file a repeated key
 * (a mapping's key too: `model:` twice is an error, not a merge), a key
 * both a value and a mapping, a sequence holding anything but scalars, a
 * YAML tag (`!!int`), more than 4096 keys once aliases are expanded, or a
 * syntax error fails with FILE:LINE, and the file adds nothing. */
infsim_status infsim_config_load_yaml(infsim_config *cfg, const char *path, infsim_error *err);

/* The same for YAML text in memory (len bytes); name stands for the file
 * in messages ("NAME:LINE: ..."). */
infsim_status infsim_config_load_yaml_text(infsim_config *cfg, const char *name, const char *text, size_t len,
                                           infsim_error *err);

/* Adds or replaces one entry from "key=value" (the --set syntax; blanks
 * around key and value are dropped; the value may contain '='). A key
 * below a value already set fails (see infsim_config_load_yaml). */
infsim_status infsim_config_set(infsim_config *cfg, const char *assignment, infsim_error *err);

/* Adds or replaces key with value; origin names where it came from in errors. */
infsim_status infsim_config_put(infsim_config *cfg, const char *key, const char *value, const char *origin,
                                infsim_error *err);

/* True when key, or any key below it ("key.x"), is present. */
bool infsim_config_has(const infsim_config *cfg, const char *key);

/* True when key itself holds a value (not only keys below it): tells
 * `model: llama2-7b` from `model: {layers: 2, ...}`. */
bool infsim_config_has_value(const infsim_config *cfg, const char *key);

/* Iterates over the keys equal to prefix or below it (every key when prefix
 * is NULL or ""), in file order: start with *pos = 0; returns NULL at the
 * end. Keys stay valid until the config changes. */
const char *infsim_config_next_key(const infsim_config *cfg, const char *prefix, size_t *pos);

/* Fails (INFSIM_EINPUT) with "ORIGIN: KEY: " followed by the formatted
 * message, for checks that span several keys ("must exceed block_tokens").
 * ORIGIN is where the key was set ("c.yaml:3", "--set", or "default").
 * cfg may be NULL, for checks on values whose config is gone (parameters
 * changed after loading): the message then starts at "KEY: ". */
infsim_status infsim_config_fail(const infsim_config *cfg, const char *key, infsim_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Typed getters. Absent key: *out = def and the default is recorded as
 * resolved. Present: parsed, range checked [min, max], marked used.
 * Errors (exit 2): "FILE:LINE: KEY: expected an integer in [min, max], got 'x'". */
infsim_status infsim_config_int(infsim_config *cfg, const char *key, int64_t def, int64_t min, int64_t max,
                                int64_t *out, infsim_error *err);
infsim_status infsim_config_double(infsim_config *cfg, const char *key, double def, double min, double max,
                                   double *out, infsim_error *err);
infsim_status infsim_config_bool(infsim_config *cfg, const char *key, bool def, bool *out, infsim_error *err);
/* The returned string lives as long as cfg. */
infsim_status infsim_config_string(infsim_config *cfg, const char *key, const char *def, const char **out,
                                   infsim_error *err);
/* Value must be one of choices (NULL-terminated); *out is its index. */
infsim_status infsim_config_enum(infsim_config *cfg, const char *key, const char *def,
                                 const char *const *choices, int *out, infsim_error *err);

/* Where key was set ("c.yaml:12", "--set"), or "default" when absent. */
const char *infsim_config_origin(const infsim_config *cfg, const char *key);

/* Marks key and every key below it used without resolving them. */
void infsim_config_mark_used(infsim_config *cfg, const char *key);

/* Drops the resolved values of key and every key below it (the entries
 * stay, marked used): keys read only to check them (a generator's keys
 * beside a trace file) are not what the run used. */
void infsim_config_forget(infsim_config *cfg, const char *key);

/* Fails with "FILE:LINE: unknown key 'a.b'" for the first entry no getter read. */
infsim_status infsim_config_check_unused(const infsim_config *cfg, infsim_error *err);

/* The same for the entries at or below prefix only. */
infsim_status infsim_config_check_unused_below(const infsim_config *cfg, const char *prefix, infsim_error *err);

/* The resolved config as a nested JSON object (new reference): every key a
 * getter read, with its resolved value (numbers as numbers, booleans as
 * booleans, strings as strings). */
json_t *infsim_config_resolved_json(const infsim_config *cfg);

#endif
