/*
 * racey: a deliberately racy memory stress, in the spirit of the Racey
 * benchmark (Hill and Xu).  Threads read-modify-write a small shared array
 * without locks; every step mixes a value read from the array into the
 * thread's running signature and writes a new value back.  A single
 * different interleaving of the reads and writes changes the final
 * signature, while one and the same interleaving always gives the same
 * result.  Two replicas that execute the guest identically must therefore
 * print identical signatures; replicas that run independently almost
 * never do.
 *
 * Usage: racey [-t THREADS] [-l LOOPS]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_ELEM   64
#define MAX_THREADS 64
#define PRIME1     103072243u
#define PRIME2     103995407u

/* Relaxed atomics: each load and store is indivisible, so there is no
 * undefined behaviour, yet nothing orders one thread's load-then-store
 * against another's.  That gap is the race the test is about. */
static uint32_t sig[MAX_ELEM];
static int start_flag;
static unsigned long loops = 100000;

static inline uint32_t mix(uint32_t i, uint32_t j)
{
    return (uint32_t)(((uint64_t)i + (uint64_t)j * PRIME2) % PRIME1);
}

static inline uint32_t ld(unsigned idx)
{
    return __atomic_load_n(&sig[idx % MAX_ELEM], __ATOMIC_RELAXED);
}

static inline void st(unsigned idx, uint32_t v)
{
    __atomic_store_n(&sig[idx % MAX_ELEM], v, __ATOMIC_RELAXED);
}

static void *body(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    uint32_t num = id;

    /* Spin until every thread exists, so they really run together. */
    while (!__atomic_load_n(&start_flag, __ATOMIC_ACQUIRE))
        ;
    for (unsigned long i = 0; i < loops; i++) {
        num = mix(num, ld(num));
        uint32_t idx = num % MAX_ELEM;
        st(idx, mix(ld(idx), num));
        num = mix(num, ld((idx + 1) % MAX_ELEM));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned nthreads = 4;
    int opt;

    while ((opt = getopt(argc, argv, "t:l:")) != -1) {
        switch (opt) {
        case 't': nthreads = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'l': loops = strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: racey [-t THREADS] [-l LOOPS]\n");
            return 2;
        }
    }
    if (nthreads < 1 || nthreads > MAX_THREADS || loops == 0) {
        fprintf(stderr, "racey: need 1..%d threads and loops > 0\n", MAX_THREADS);
        return 2;
    }

    for (unsigned i = 0; i < MAX_ELEM; i++)
        sig[i] = i;

    pthread_t t[MAX_THREADS];
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&t[i], NULL, body, (void *)(uintptr_t)i)) {
            perror("racey: pthread_create");
            return 1;
        }
    }
    __atomic_store_n(&start_flag, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);

    /* Fold the whole array so a race anywhere shows up in one number. */
    uint32_t s = 0;
    for (unsigned i = 0; i < MAX_ELEM; i++)
        s = mix(s, sig[i]);
    printf("racey threads=%u loops=%lu signature=%08x\n", nthreads, loops, s);
    return 0;
}
