/* The payments story in C: a planner delegates to a finance agent; a 1200 payment is allowed,
 * 9000 needs approval, the planner's self-approval is refused, the finance approver approves,
 * the override token works once. Build:
 *   gcc -std=c11 -Wall -Wextra -Werror -Iaegis-ffi/include examples/c/payments.c \
 *       -Ltarget/<triple>/debug -laegis_ffi -o payments
 * Run: payments <repo-root> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aegis.h"

#define TOOL "stripe.create_payment"
#define ISSUER "https://issuer.aegis.example"

static int failures = 0;

/* Exits with the error when an Aegis call fails: a real caller would fail closed the same way. */
static void must(AegisStatus status, const char *what) {
  if (status != AEGIS_STATUS_OK) {
    fprintf(stderr, "%s failed: status %d %s\n", what, (int)status, aegis_last_error_json());
    exit(1);
  }
}

static char *key(int n) {
  char seed[65];
  for (int i = 0; i < 32; i++) snprintf(seed + 2 * i, 3, "%02x", n);
  char request[128];
  snprintf(request, sizeof request, "{\"seed_hex\":\"%s\"}", seed);
  char *jwk = NULL;
  must(aegis_call("generate_key", request, &jwk), "key");
  return jwk;
}

static char *public_of(const char *jwk) {
  char *pub = NULL;
  must(aegis_call("public_jwk", jwk, &pub), "public key");
  return pub;
}

/* Issues a credential; the operation returns a JSON string, whose quotes are dropped here (a
 * compact JWS holds nothing that JSON escapes). Free with aegis_string_free. */
static char *issue(const char *request) {
  char *token = NULL;
  must(aegis_call("issue", request, &token), "issue");
  size_t n = strlen(token);
  if (n >= 2 && token[0] == '"') {
    memmove(token, token + 1, n - 2);
    token[n - 2] = '\0';
  }
  return token;
}

/* The string value at `pointer` in `json`, without quotes, into `dst`. */
static void field(const char *json, const char *pointer, char *dst, size_t cap) {
  char *v = NULL;
  dst[0] = '\0';
  if (aegis_json_get(json, pointer, &v) == AEGIS_STATUS_OK) {
    size_t n = strlen(v);
    const char *s = v;
    if (n >= 2 && v[0] == '"') {
      s = v + 1;
      n -= 2;
    }
    snprintf(dst, cap, "%.*s", (int)n, s);
  }
  aegis_string_free(v);
}

static char *authorize(AegisEngine *engine, const char *chain, int amount, const char *token, const char *expect) {
  char request[16384];
  snprintf(request, sizeof request,
           "{\"chain\":%s,\"tool\":\"" TOOL "\",\"args\":{\"amount\":%d,\"currency\":\"eur\",\"destination\":\"acct_1032D82eZvKYlo2C\"}%s%s%s}",
           chain, amount, token ? ",\"approval_token\":\"" : "", token ? token : "", token ? "\"" : "");
  char *decision = NULL;
  must(aegis_engine_call(engine, "authorize", request, &decision), "authorize");
  char outcome[64], code[64];
  field(decision, "/outcome", outcome, sizeof outcome);
  field(decision, "/reasons/0/code", code, sizeof code);
  printf("  %d%s -> %s (%s)%s\n", amount, token ? " with override" : "", outcome, code, strcmp(outcome, expect) ? "  UNEXPECTED" : "");
  if (strcmp(outcome, expect) != 0) failures++;
  return decision;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <repo-root>\n", argv[0]);
    return 2;
  }
  char *issuer = key(1), *planner = key(2), *finance = key(3), *approver = key(4);
  char *issuer_pub = public_of(issuer), *planner_pub = public_of(planner), *finance_pub = public_of(finance),
       *approver_pub = public_of(approver);

  char config[8192];
  snprintf(config, sizeof config, "{\"bundle_dir\":\"%s/policies/payments\",\"trusted_issuers\":[{\"issuer\":\"" ISSUER "\",\"jwk\":%s}]}",
           argv[1], issuer_pub);
  AegisEngine *engine = NULL;
  must(aegis_engine_new(config, &engine), "engine");

  char request[16384];
  snprintf(request, sizeof request,
           "{\"issuer\":\"" ISSUER "\",\"signing_key\":%s,\"agent_id\":\"planner\",\"agent_key\":%s,\"task_id\":\"c-task\","
           "\"intent\":\"pay the approved vendor invoices\",\"scope\":[\"" TOOL "\"],\"ttl_secs\":900}",
           issuer, planner_pub);
  char *planner_cred = issue(request);
  snprintf(request, sizeof request,
           "{\"parent\":\"%s\",\"signing_key\":%s,\"agent_id\":\"finance-agent\",\"agent_key\":%s,\"scope\":[\"" TOOL "\"],\"ttl_secs\":600}",
           planner_cred, planner, finance_pub);
  char *finance_cred = issue(request);
  snprintf(request, sizeof request,
           "{\"issuer\":\"" ISSUER "\",\"signing_key\":%s,\"agent_id\":\"finance-approver\",\"agent_key\":%s,\"task_id\":\"desk\","
           "\"intent\":\"review approvals\",\"scope\":[\"aegis.approve\"],\"roles\":[\"finance-approver\"],\"ttl_secs\":900}",
           issuer, approver_pub);
  char *approver_cred = issue(request);

  char chain[8192], planner_chain[4096], approver_chain[4096];
  snprintf(chain, sizeof chain, "[\"%s\",\"%s\"]", planner_cred, finance_cred);
  snprintf(planner_chain, sizeof planner_chain, "[\"%s\"]", planner_cred);
  snprintf(approver_chain, sizeof approver_chain, "[\"%s\"]", approver_cred);

  printf("finance-agent, delegated by the planner:\n");
  aegis_string_free(authorize(engine, chain, 1200, NULL, "allow"));
  aegis_string_free(authorize(engine, planner_chain, 1200, NULL, "deny"));
  char *waiting = authorize(engine, chain, 9000, NULL, "approval_needed");
  char approval_id[128];
  field(waiting, "/approval_id", approval_id, sizeof approval_id);
  aegis_string_free(waiting);

  char *resolution = NULL;
  snprintf(request, sizeof request, "{\"approval_id\":\"%s\",\"approver_chain\":%s}", approval_id, planner_chain);
  must(aegis_engine_call(engine, "approve", request, &resolution), "approve (planner)");
  char accepted[16];
  field(resolution, "/accepted", accepted, sizeof accepted);
  printf("the planner approves its own delegate's request: %s\n", strcmp(accepted, "false") == 0 ? "refused" : "ACCEPTED");
  if (strcmp(accepted, "false") != 0) failures++;
  aegis_string_free(resolution);

  snprintf(request, sizeof request, "{\"approval_id\":\"%s\",\"approver_chain\":%s}", approval_id, approver_chain);
  must(aegis_engine_call(engine, "approve", request, &resolution), "approve (finance approver)");
  field(resolution, "/accepted", accepted, sizeof accepted);
  if (strcmp(accepted, "true") != 0) {
    printf("the finance approver was refused  UNEXPECTED\n");
    failures++;
  }
  char token[2048];
  field(resolution, "/override_token", token, sizeof token);
  aegis_string_free(resolution);
  printf("the finance approver approves; the override token is single use:\n");
  aegis_string_free(authorize(engine, chain, 9000, token, "allow"));
  aegis_string_free(authorize(engine, chain, 9000, token, "deny"));

  must(aegis_engine_free(engine), "free");
  char *owned[] = {issuer, planner, finance, approver, issuer_pub, planner_pub, finance_pub, approver_pub,
                   planner_cred, finance_cred, approver_cred};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) aegis_string_free(owned[i]);
  printf("%s\n", failures == 0 ? "c payments story: ok" : "c payments story: FAILED");
  return failures == 0 ? 0 : 1;
}
