/*
 * What fuzz-syncvm and its corpus generator agree on: the selector byte
 * in front of each input, the memory view's region ids, and the device
 * state base the delta path decodes against.
 */
#ifndef FUZZ_SYNCVM_H
#define FUZZ_SYNCVM_H

#include <stdint.h>

enum {
    FUZZ_SVM_BITMAP,
    FUZZ_SVM_HASHES,
    FUZZ_SVM_PAGES,
    FUZZ_SVM_BLOCKREQ,
    FUZZ_SVM_BLOCKHASHES,
    FUZZ_SVM_DEVSTATE,
    FUZZ_SVM_EOF,
    FUZZ_SVM_ACK,
    FUZZ_SVM_NACK,
    FUZZ_SVM_DEVSTATE_DELTA,
    FUZZ_SVM_HELLO,             /* the agreement (syncvm-agree.h) */
    FUZZ_SVM_REPLY,
    FUZZ_SVM_SKIP,
    FUZZ_SVM_ROUND,
    FUZZ_SVM_KINDS
};

#define FUZZ_SVM_REGION_A 10
#define FUZZ_SVM_REGION_B 11
#define FUZZ_SVM_BASE_LEN 4096

static inline const uint8_t *fuzz_svm_base(void)
{
    static uint8_t base[FUZZ_SVM_BASE_LEN];
    static int done;

    if (!done) {
        for (unsigned i = 0; i < FUZZ_SVM_BASE_LEN; i++) {
            base[i] = (uint8_t)(i * 131 + i / 64);
        }
        done = 1;
    }
    return base;
}

#endif
