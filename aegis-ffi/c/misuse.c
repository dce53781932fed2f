/* Bad input from C gets a status and a message, never a crash. Prints one line per check and
 * "misuse: ok" when every check held. Usage: misuse <repo-root>. */
#include <stdio.h>
#include <string.h>

#include "aegis.h"

static int failures = 0;

static void expect(const char *what, AegisStatus got, AegisStatus want, const char *code) {
  int ok = got == want && (code == NULL || strcmp(aegis_last_error_code(), code) == 0);
  printf("%s %s: status %d, code `%s`\n", ok ? "ok  " : "FAIL", what, (int)got, aegis_last_error_code());
  if (!ok) failures++;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  char config[4096];
  char *issuer = NULL;
  char *issuer_pub = NULL;
  aegis_call("generate_key", "{\"seed_hex\":\"0101010101010101010101010101010101010101010101010101010101010101\"}", &issuer);
  aegis_call("public_jwk", issuer, &issuer_pub);
  snprintf(config, sizeof config, "{\"bundle_dir\":\"%s/policies/payments\",\"trusted_issuers\":[{\"issuer\":\"i\",\"jwk\":%s}]}",
           argv[1], issuer_pub);
  aegis_string_free(issuer);
  aegis_string_free(issuer_pub);

  AegisEngine *engine = NULL;
  char *out = NULL;
  expect("null config", aegis_engine_new(NULL, &engine), AEGIS_STATUS_NULL_POINTER, "null_pointer");
  expect("null out", aegis_engine_new(config, NULL), AEGIS_STATUS_NULL_POINTER, "null_pointer");
  expect("malformed config json", aegis_engine_new("{not json", &engine), AEGIS_STATUS_MALFORMED_REQUEST, "malformed_request");
  expect("missing bundle", aegis_engine_new("{\"bundle_dir\":\"/nonexistent\",\"trusted_issuers\":[]}", &engine),
         AEGIS_STATUS_INVALID_BUNDLE, "invalid_bundle");
  expect("engine", aegis_engine_new(config, &engine), AEGIS_STATUS_OK, NULL);

  const char bad_utf8[] = {'{', '"', (char)0xff, (char)0xfe, '"', '}', 0};
  expect("invalid utf-8", aegis_engine_call(engine, "authorize", bad_utf8, &out), AEGIS_STATUS_INVALID_UTF8, "invalid_utf8");
  expect("malformed request json", aegis_engine_call(engine, "authorize", "[1,2", &out), AEGIS_STATUS_MALFORMED_REQUEST, "malformed_request");
  expect("duplicate keys", aegis_engine_call(engine, "authorize", "{\"chain\":[],\"tool\":\"a\",\"tool\":\"b\"}", &out),
         AEGIS_STATUS_MALFORMED_REQUEST, "malformed_request");
  expect("null engine", aegis_engine_call(NULL, "authorize", "{}", &out), AEGIS_STATUS_NULL_POINTER, "null_pointer");
  expect("null request", aegis_engine_call(engine, "authorize", NULL, &out), AEGIS_STATUS_NULL_POINTER, "null_pointer");
  expect("null out", aegis_engine_call(engine, "authorize", "{\"chain\":[],\"tool\":\"x\"}", NULL), AEGIS_STATUS_NULL_POINTER, "null_pointer");
  int not_an_engine = 42;
  expect("foreign pointer as engine", aegis_engine_call((const AegisEngine *)&not_an_engine, "authorize", "{}", &out),
         AEGIS_STATUS_INVALID_HANDLE, "invalid_handle");
  expect("unknown approval", aegis_engine_call(engine, "approve", "{\"approval_id\":\"apr_x\",\"approver_chain\":[]}", &out),
         AEGIS_STATUS_ERROR, "approval_not_found");
  /* A denied call is a decision, not an error. */
  expect("deny is a decision", aegis_engine_call(engine, "authorize", "{\"chain\":[],\"tool\":\"stripe.create_payment\"}", &out),
         AEGIS_STATUS_OK, NULL);
  aegis_string_free(out);
  out = NULL;
  expect("bad key seed", aegis_call("generate_key", "{\"seed_hex\":\"zz\"}", &out), AEGIS_STATUS_INVALID_KEY, "invalid_key");
  expect("unknown operation", aegis_engine_call(engine, "frobnicate", "{}", &out), AEGIS_STATUS_ERROR, "unknown_operation");
  expect("free operation needs no engine", aegis_call("call_digest", "{\"tool\":\"t\",\"args\":{}}", &out), AEGIS_STATUS_OK, NULL);
  aegis_string_free(out);
  out = NULL;
  expect("engine operation without engine", aegis_call("authorize", "{}", &out), AEGIS_STATUS_MALFORMED_REQUEST, "malformed_request");
  expect("null op", aegis_call(NULL, "{}", &out), AEGIS_STATUS_NULL_POINTER, "null_pointer");

  expect("free", aegis_engine_free(engine), AEGIS_STATUS_OK, NULL);
  expect("use after free", aegis_engine_call(engine, "authorize", "{}", &out), AEGIS_STATUS_INVALID_HANDLE, "invalid_handle");
  expect("double free", aegis_engine_free(engine), AEGIS_STATUS_INVALID_HANDLE, "invalid_handle");
  expect("free NULL", aegis_engine_free(NULL), AEGIS_STATUS_OK, NULL);
  aegis_string_free(NULL);

  printf("%s\n", failures == 0 ? "misuse: ok" : "misuse: FAILED");
  return failures == 0 ? 0 : 1;
}
