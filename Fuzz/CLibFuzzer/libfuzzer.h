#ifndef VKVERBS_CLIBFUZZER_H
#define VKVERBS_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's documented driver entry point (compiler-rt, FuzzerInterface.h / LibFuzzer.rst):
   runs libFuzzer with the given command line, calling `callback` for each input. Only defined
   when the binary is linked with -sanitize=fuzzer; only referenced under VKVERBS_FUZZING. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
