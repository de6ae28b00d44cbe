/*
 * Examples/c/checks.h: the C examples' check counters: EXPECT(fn, (args), status) wants the call to
 * return status and, on an error, a message that names the function; TRUE(cond) wants cond.
 * Each failure prints its line; the program reports checks and failures at its end.
 */
#ifndef VKV_EXAMPLE_CHECKS_H
#define VKV_EXAMPLE_CHECKS_H

#include <stdio.h>
#include <string.h>

#include <vkverbs.h>

static int checks, failures;

/* expect(call, status): the call returns status; a failure leaves a message naming the function. */
static void expect_at(vkv_status got, vkv_status want, const char *call, const char *function, int line) {
    checks++;
    const char *msg = vkv_last_error_message();
    int ok = got == want;
    if (ok && want != VKV_OK) ok = msg && strncmp(msg, function, strlen(function)) == 0 && strlen(msg) > strlen(function) + 2;
    if (!ok) {
        failures++;
        printf("FAIL line %d: %s\n      returned %s, expected %s; message: \"%s\"\n", line, call, vkv_status_string(got),
               vkv_status_string(want), msg ? msg : "(null)");
    } else if (want != VKV_OK) {
        printf("ok   %-24s %s\n", vkv_status_string(got), msg);
    }
}
#define EXPECT(fn, args, want) expect_at(fn args, want, #fn #args, #fn, __LINE__)

static void truth(int condition, const char *what, int line) {
    checks++;
    if (!condition) {
        failures++;
        printf("FAIL line %d: %s\n", line, what);
    }
}
#define TRUE(cond) truth((cond), #cond, __LINE__)

#endif
