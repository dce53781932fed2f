/* Runs the shared decision vectors (tests/vectors/decisions.json) through the C API and prints
 * "N passed, N failed". Usage: vectors <repo-root>. Every string Aegis returns is freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aegis.h"

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf) buf[n] = '\0';
  fclose(f);
  return buf;
}

/* The JSON text at `pointer`, or NULL. Free with aegis_string_free. */
static char *get(const char *json, const char *pointer) {
  char *out = NULL;
  return aegis_json_get(json, pointer, &out) == AEGIS_STATUS_OK ? out : NULL;
}

static int by_string(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Builds a compact JSON array of the string values at `<prefix>/<i><field>` (sorted if asked). */
static void collect(const char *json, const char *prefix, const char *field, int sorted, char *dst, size_t cap) {
  char *items[64];
  int n = 0;
  char pointer[256];
  for (int i = 0; i < 64; i++) {
    snprintf(pointer, sizeof pointer, "%s/%d", prefix, i);
    char *item = get(json, pointer);
    if (!item) break;
    aegis_string_free(item);
    snprintf(pointer, sizeof pointer, "%s/%d%s", prefix, i, field);
    char *value = get(json, pointer);
    if (value) items[n++] = value;
  }
  if (sorted) qsort(items, (size_t)n, sizeof items[0], by_string);
  snprintf(dst, cap, "[");
  for (int i = 0; i < n; i++) {
    strncat(dst, items[i], cap - strlen(dst) - 2);
    if (i + 1 < n) strncat(dst, ",", cap - strlen(dst) - 1);
    aegis_string_free(items[i]);
  }
  strncat(dst, "]", cap - strlen(dst) - 1);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <repo-root>\n", argv[0]);
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/vectors/decisions.json", argv[1]);
  char *vectors = read_file(path);
  if (!vectors) {
    fprintf(stderr, "cannot read %s\n", path);
    return 2;
  }
  char *issuers = get(vectors, "/engine/trusted_issuers");
  char *fixed_time = get(vectors, "/engine/fixed_time");
  char config[16384];
  snprintf(config, sizeof config, "{\"bundle_dir\":\"%s/policies/payments\",\"trusted_issuers\":%s,\"fixed_time\":%s}",
           argv[1], issuers, fixed_time);
  aegis_string_free(issuers);
  aegis_string_free(fixed_time);

  int passed = 0, failed = 0;
  for (int i = 0;; i++) {
    char pointer[128];
    snprintf(pointer, sizeof pointer, "/cases/%d", i);
    char *c = get(vectors, pointer);
    if (!c) break;
    char *name = get(c, "/name");
    char *request = get(c, "/request");
    char *expect = get(c, "/expect");
    AegisEngine *engine = NULL;
    char *decision = NULL;
    int ok = 0;
    if (aegis_engine_new(config, &engine) == AEGIS_STATUS_OK &&
        aegis_engine_call(engine, "authorize", request, &decision) == AEGIS_STATUS_OK) {
      char codes[2048], ids[2048];
      collect(decision, "/reasons", "/code", 0, codes, sizeof codes);
      collect(decision, "/reasons", "/policy_id", 1, ids, sizeof ids);
      char *outcome = get(decision, "/outcome");
      char *would_block = get(decision, "/would_block");
      const char *fields[4][2] = {{"/outcome", outcome}, {"/codes", codes}, {"/policy_ids", ids}, {"/would_block", would_block}};
      ok = 1;
      for (int f = 0; f < 4; f++) {
        char *want = get(expect, fields[f][0]);
        if (!want || !fields[f][1] || strcmp(want, fields[f][1]) != 0) {
          fprintf(stderr, "%s: %s expected %s, got %s\n", name, fields[f][0], want ? want : "?", fields[f][1] ? fields[f][1] : "?");
          ok = 0;
        }
        aegis_string_free(want);
      }
      aegis_string_free(outcome);
      aegis_string_free(would_block);
    } else {
      fprintf(stderr, "%s: error %s\n", name, aegis_last_error_json());
    }
    ok ? passed++ : failed++;
    aegis_string_free(decision);
    aegis_engine_free(engine);
    aegis_string_free(name);
    aegis_string_free(request);
    aegis_string_free(expect);
    aegis_string_free(c);
  }
  free(vectors);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
