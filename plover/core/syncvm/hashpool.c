/*
 * A small fixed thread pool for data-parallel loops (page hashing).
 *
 * The caller of plv_hash_pool_run works too, so a pool of N threads starts
 * N - 1; chunks are handed out with one atomic counter, which keeps the
 * threads busy even when pages cost differently (zero pages are cheap).
 */
#include "plover/pagehash.h"

#include <glib.h>

struct PlvHashPool {
    unsigned n_threads;
    GThread **threads;
    GMutex run_lock;            /* one run at a time */
    GMutex lock;
    GCond start_cond, done_cond;
    uint64_t generation;        /* bumped for each run */
    bool quit;
    unsigned busy;              /* workers still in the current run */
    /* the current run */
    PlvHashPoolFn fn;
    void *opaque;
    uint64_t n, chunk;
    uint64_t next;              /* atomic: next item to hand out */
};

unsigned plv_hash_pool_default_threads(void)
{
    unsigned n = g_get_num_processors();

    /* Leave one core for the vCPUs and the main loop. */
    return n > 1 ? n - 1 : 1;
}

static void run_chunks(PlvHashPool *p)
{
    for (;;) {
        uint64_t b = __atomic_fetch_add(&p->next, p->chunk, __ATOMIC_RELAXED);

        if (b >= p->n) {
            return;
        }
        p->fn(p->opaque, b, MIN(b + p->chunk, p->n));
    }
}

static gpointer worker_main(gpointer opaque)
{
    PlvHashPool *p = opaque;
    uint64_t seen = 0;

    g_mutex_lock(&p->lock);
    for (;;) {
        while (p->generation == seen && !p->quit) {
            g_cond_wait(&p->start_cond, &p->lock);
        }
        if (p->quit) {
            break;
        }
        seen = p->generation;
        g_mutex_unlock(&p->lock);
        run_chunks(p);
        g_mutex_lock(&p->lock);
        if (--p->busy == 0) {
            g_cond_signal(&p->done_cond);
        }
    }
    g_mutex_unlock(&p->lock);
    return NULL;
}

PlvHashPool *plv_hash_pool_new(unsigned n_threads)
{
    PlvHashPool *p = g_new0(PlvHashPool, 1);

    p->n_threads = n_threads ? n_threads : plv_hash_pool_default_threads();
    g_mutex_init(&p->run_lock);
    g_mutex_init(&p->lock);
    g_cond_init(&p->start_cond);
    g_cond_init(&p->done_cond);
    p->threads = g_new0(GThread *, p->n_threads);
    for (unsigned i = 1; i < p->n_threads; i++) {
        p->threads[i] = g_thread_new("plv-hash", worker_main, p);
    }
    return p;
}

void plv_hash_pool_free(PlvHashPool *p)
{
    if (!p) {
        return;
    }
    g_mutex_lock(&p->lock);
    p->quit = true;
    g_cond_broadcast(&p->start_cond);
    g_mutex_unlock(&p->lock);
    for (unsigned i = 1; i < p->n_threads; i++) {
        g_thread_join(p->threads[i]);
    }
    g_free(p->threads);
    g_cond_clear(&p->start_cond);
    g_cond_clear(&p->done_cond);
    g_mutex_clear(&p->lock);
    g_mutex_clear(&p->run_lock);
    g_free(p);
}

unsigned plv_hash_pool_threads(const PlvHashPool *p)
{
    return p->n_threads;
}

void plv_hash_pool_run(PlvHashPool *p, uint64_t n, uint64_t chunk,
                       PlvHashPoolFn fn, void *opaque)
{
    if (n == 0) {
        return;
    }
    chunk = chunk ? chunk : 1;
    if (p->n_threads == 1 || n <= chunk) {
        fn(opaque, 0, n);
        return;
    }
    g_mutex_lock(&p->run_lock);
    g_mutex_lock(&p->lock);
    p->fn = fn;
    p->opaque = opaque;
    p->n = n;
    p->chunk = chunk;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    p->busy = p->n_threads - 1;
    p->generation++;
    g_cond_broadcast(&p->start_cond);
    g_mutex_unlock(&p->lock);

    run_chunks(p);

    g_mutex_lock(&p->lock);
    while (p->busy > 0) {
        g_cond_wait(&p->done_cond, &p->lock);
    }
    g_mutex_unlock(&p->lock);
    g_mutex_unlock(&p->run_lock);
}
