/*
 * syncvm, leader side: sending the divergent pages. With overlap_send, a
 * thread sends them while the leader's main thread is still hashing and
 * comparing later steps of the union, so that the transfer overlaps the
 * compute phase instead of following it (the main thread only receives
 * meanwhile). Without it, everything is sent by the caller at the end.
 *
 * Pages are batched exactly as they would be without the overlap (at most
 * SVM_PAGES_PER_MSG records or SVM_CHUNK_BYTES of data per PAGES), so the
 * bytes on the wire do not depend on timing.
 */
#include "syncvm/syncvm-int.h"

#include <string.h>

struct SvmSender {
    SvmRun *r;
    const uint32_t *div;        /* union indices; grows, owned by caller */
    GThread *thread;
    GMutex lock;
    GCond cond;
    uint32_t ready;             /* div[0, ready) may be sent */
    bool done;                  /* no more will come */
    bool stop;                  /* give up (the attempt failed) */
    GError *err;                /* the sender's failure */
    uint32_t n_zero;
    GByteArray *tx, *scratch;
    GByteArray *copies;         /* live_source: the batch's pages as sent */
    PlvZstd *z;                 /* its own: it may run beside the run's */
};

static bool div_is_zero(SvmSender *s, uint32_t k)
{
    SvmRun *r = s->r;
    const PlvPageRef *ref = &r->u.refs[s->div[k]];
    const PlvMemRegion *reg = plv_memview_region_const(r->mv, ref->region);

    if (r->cfg->live_source) {
        return false;           /* a zero page then may not be one now */
    }
    if (r->zero) {
        return r->zero[s->div[k]];
    }
    return plv_page_is_zero(plv_memview_page(reg, ref->page), reg->page_size);
}

/*
 * End of the batch starting at div[from] with div[0, ready) known;
 * *full: the batch cannot grow any more.
 */
static uint32_t batch_end(SvmSender *s, uint32_t from, uint32_t ready,
                          bool *full)
{
    size_t data = 0;
    uint32_t k = from;

    *full = false;
    for (; k < ready && k - from < SVM_PAGES_PER_MSG; k++) {
        const PlvPageRef *ref = &s->r->u.refs[s->div[k]];
        uint32_t ps = plv_memview_region_const(s->r->mv, ref->region)
                      ->page_size;

        if (div_is_zero(s, k)) {
            continue;
        }
        if (k > from && data + ps > SVM_CHUNK_BYTES) {
            *full = true;
            return k;
        }
        data += ps;
    }
    *full = k - from == SVM_PAGES_PER_MSG;
    return k;
}

static int send_batch(SvmSender *s, uint32_t from, uint32_t to, GError **err)
{
    SvmRun *r = s->r;
    PlvSvmPageRec recs[SVM_PAGES_PER_MSG];
    struct iovec iov[SVM_PAGES_PER_MSG];
    int niov = 0;
    size_t data = 0;

    for (uint32_t k = from; k < to; k++) {
        uint32_t idx = s->div[k];
        const PlvPageRef *ref = &r->u.refs[idx];
        const PlvMemRegion *reg = plv_memview_region_const(r->mv,
                                                           ref->region);
        bool zero = div_is_zero(s, k);
        PlvSvmPageRec *rec = &recs[k - from];

        memset(rec, 0, sizeof(*rec));
        rec->index = idx;
        rec->kind = zero ? PLV_SVM_PAGE_ZERO : PLV_SVM_PAGE_DATA;
        /* In FULL mode there are no fingerprints to check against. */
        rec->hash = r->hashes ? r->hashes[idx] : (PlvPageHash){ 0, 0 };
        if (zero) {
            s->n_zero++;
            continue;
        }
        iov[niov].iov_base = plv_memview_page(reg, ref->page);
        if (r->cfg->live_source) {
            uint8_t *copy = s->copies->data + data;

            memcpy(copy, iov[niov].iov_base, reg->page_size);
            rec->hash = plv_page_hash(r->cfg->key, copy, reg->page_size);
            iov[niov].iov_base = copy;
        }
        iov[niov].iov_len = reg->page_size;
        niov++;
        data += reg->page_size;
    }
    return plv_svm_run_send_pages(r, s->z, s->tx, s->scratch, recs, to - from,
                                  iov, niov, data, err);
}

/* True if a full batch is waiting (called with the lock held). */
static bool batch_waiting(SvmSender *s, uint32_t sent)
{
    bool full = false;

    if (s->ready > sent) {
        batch_end(s, sent, s->ready, &full);
    }
    return full;
}

static gpointer sender_main(gpointer opaque)
{
    SvmSender *s = opaque;
    uint32_t sent = 0;

    for (;;) {
        uint32_t ready, end;
        bool done, full;
        GError *e = NULL;

        g_mutex_lock(&s->lock);
        while (!s->stop && !s->done && !batch_waiting(s, sent)) {
            g_cond_wait(&s->cond, &s->lock);
        }
        if (s->stop) {
            g_mutex_unlock(&s->lock);
            return NULL;
        }
        ready = s->ready;
        done = s->done;
        g_mutex_unlock(&s->lock);

        while (sent < ready) {
            end = batch_end(s, sent, ready, &full);
            if (!full && !done) {
                break;          /* the rest waits for more pages */
            }
            if (send_batch(s, sent, end, &e) < 0) {
                g_mutex_lock(&s->lock);
                s->err = e;
                g_mutex_unlock(&s->lock);
                return NULL;
            }
            sent = end;
        }
        if (done) {
            return NULL;
        }
    }
}

SvmSender *plv_svm_sender_start(SvmRun *r, const uint32_t *div,
                                bool threaded)
{
    SvmSender *s = g_new0(SvmSender, 1);

    s->r = r;
    s->div = div;
    s->tx = g_byte_array_new();
    s->scratch = g_byte_array_new();
    s->copies = g_byte_array_new();
    if (r->cfg->live_source) {
        /* batch_end: a batch's data fits a chunk, or is a single page */
        size_t room = SVM_CHUNK_BYTES;

        for (unsigned i = 0; i < plv_memview_n_regions(r->mv); i++) {
            room = MAX(room, plv_memview_region_const(r->mv, i)->page_size);
        }
        g_byte_array_set_size(s->copies, room);
    }
    s->z = plv_zstd_new(SVM_ZSTD_LEVEL);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    if (threaded) {
        s->thread = g_thread_new("plv-svm-send", sender_main, s);
    }
    return s;
}

bool plv_svm_sender_publish(SvmSender *s, uint32_t ready)
{
    bool ok;

    g_mutex_lock(&s->lock);
    s->ready = ready;
    ok = s->err == NULL;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    return ok;
}

static void sender_free(SvmSender *s)
{
    if (s->thread) {
        g_thread_join(s->thread);
    }
    g_byte_array_unref(s->tx);
    g_byte_array_unref(s->scratch);
    g_byte_array_unref(s->copies);
    plv_zstd_free(s->z);
    g_cond_clear(&s->cond);
    g_mutex_clear(&s->lock);
    if (s->err) {
        g_error_free(s->err);
    }
    g_free(s);
}

int plv_svm_sender_finish(SvmSender *s, uint32_t *n_zero, GError **err)
{
    int ret = 0;

    g_mutex_lock(&s->lock);
    s->done = true;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    if (s->thread) {
        g_thread_join(s->thread);
        s->thread = NULL;
    } else {
        sender_main(s);         /* not overlapped: send everything now */
    }
    *n_zero = s->n_zero;
    if (s->err) {
        g_propagate_error(err, s->err);
        s->err = NULL;
        ret = -1;
    }
    sender_free(s);
    return ret;
}

void plv_svm_sender_abort(SvmSender *s)
{
    g_mutex_lock(&s->lock);
    s->stop = true;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    sender_free(s);
}
