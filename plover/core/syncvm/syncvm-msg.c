/*
 * syncvm wire messages (format in syncvm-msg.h).
 *
 * Decoders read through a bounds-checked cursor: a short or over-long body
 * fails with PLV_SVM_ERROR_MALFORMED before any field is used.
 */
#include "plover/syncvm-msg.h"
#include "plover/bytes.h"
#include "plover/zstd-codec.h"

#include <string.h>

G_DEFINE_QUARK(plv-svm-error-quark, plv_svm_error)

/* BLOCKHASHES names the super-blocks of a page in one byte. */
G_STATIC_ASSERT(PLV_PAGE_SUPERBLOCKS <= 8);

static int malformed(GError **err, const char *what)
{
    g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                "malformed syncvm message: %s", what);
    return -1;
}

void plv_svm_union_build(PlvSvmUnion *u, const PlvMemView *mv,
                         const PlvBitmap *bitmaps)
{
    uint64_t total = 0;
    uint32_t k = 0;

    for (unsigned r = 0; r < plv_memview_n_regions(mv); r++) {
        total += plv_bitmap_count(&bitmaps[r]);
    }
    /* Union indices are u32 on the wire; regions are capped at 2^32 pages. */
    g_assert(total <= UINT32_MAX);
    u->n = (uint32_t)total;
    u->refs = g_new(PlvPageRef, MAX(total, 1));
    for (unsigned r = 0; r < plv_memview_n_regions(mv); r++) {
        const PlvBitmap *b = &bitmaps[r];
        uint64_t nw = plv_bitmap_n_words(b->n_bits);

        for (uint64_t w = 0; w < nw; w++) {
            uint64_t bits = b->words[w];

            while (bits) {
                unsigned i = __builtin_ctzll(bits);

                u->refs[k].region = r;
                u->refs[k].page = (uint32_t)(w * 64 + i);
                k++;
                bits &= bits - 1;
            }
        }
    }
    g_assert(k == u->n);
}

PlvPageHash plv_svm_union_digest(const PlvHashKey *key, const PlvMemView *mv,
                                 const PlvBitmap *bitmaps)
{
    PlvPageHash d = { 0, 0 };

    for (unsigned r = 0; r < plv_memview_n_regions(mv); r++) {
        PlvPageHash h = plv_page_hash(key, bitmaps[r].words,
                                      plv_bitmap_n_words(bitmaps[r].n_bits) *
                                      sizeof(uint64_t));

        /* Order matters: rotate before mixing each region in. */
        d.lo = ((d.lo << 1) | (d.lo >> 63)) ^ h.lo;
        d.hi = ((d.hi << 1) | (d.hi >> 63)) ^ h.hi;
    }
    return d;
}

void plv_svm_union_clear(PlvSvmUnion *u)
{
    g_free(u->refs);
    u->refs = NULL;
    u->n = 0;
}

void plv_svm_put_hdr(GByteArray *out, const PlvSvmHdr *h)
{
    plv_append_u16(out, PLV_SVM_VERSION);
    plv_append_u16(out, h->flags);
    plv_append_u32(out, h->attempt);
    plv_append_u64(out, h->vid);
    plv_append_u64(out, h->epoch);
}

int plv_svm_get_hdr(const uint8_t *buf, size_t len, PlvSvmHdr *h,
                    const uint8_t **body, size_t *body_len, GError **err)
{
    PlvReader c = plv_reader(buf, len);
    uint16_t version;

    if (!plv_read_u16(&c, &version) || !plv_read_u16(&c, &h->flags) ||
        !plv_read_u32(&c, &h->attempt) || !plv_read_u64(&c, &h->vid) ||
        !plv_read_u64(&c, &h->epoch)) {
        return malformed(err, "short header");
    }
    if (version != PLV_SVM_VERSION) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_VERSION,
                    "syncvm message version %u, expected %u", version,
                    PLV_SVM_VERSION);
        return -1;
    }
    if (h->flags & ~PLV_SVM_KNOWN_FLAGS) {
        return malformed(err, "unknown header flags");
    }
    *body = buf + c.off;
    *body_len = plv_reader_left(&c);
    return 0;
}

/* A fingerprint on the wire: lo, then hi (u64 each). */
static void put_hash(GByteArray *out, const PlvPageHash *h)
{
    plv_append_u64(out, h->lo);
    plv_append_u64(out, h->hi);
}

static bool read_hash(PlvReader *c, PlvPageHash *h)
{
    return plv_read_u64(c, &h->lo) && plv_read_u64(c, &h->hi);
}

static void put_base(GByteArray *out, const PlvSvmBase *base)
{
    plv_append_u64(out, base->len);
    put_hash(out, &base->hash);
}

void plv_svm_encode_bitmap(GByteArray *out, const PlvSvmHdr *h,
                           const PlvMemView *mv, const PlvBitmap *bitmaps,
                           const PlvSvmBase *base)
{
    unsigned nr = plv_memview_n_regions(mv);

    plv_svm_put_hdr(out, h);
    plv_append_u32(out, nr);
    for (unsigned r = 0; r < nr; r++) {
        const PlvMemRegion *reg = plv_memview_region_const(mv, r);
        const PlvBitmap *b = &bitmaps[r];
        uint64_t nw = plv_bitmap_n_words(b->n_bits), nz = 0;

        for (uint64_t w = 0; w < nw; w++) {
            nz += b->words[w] != 0;
        }
        plv_append_u32(out, reg->id);
        plv_append_u32(out, reg->page_size);
        plv_append_u64(out, reg->n_pages);
        /* A sparse entry costs 12 bytes, a raw word 8: pick the smaller. */
        if (nz * 12 < nw * 8) {
            plv_append_u8(out, PLV_SVM_BITMAP_SPARSE);
            plv_append_u32(out, (uint32_t)nz);
            for (uint64_t w = 0; w < nw; w++) {
                if (b->words[w]) {
                    plv_append_u32(out, (uint32_t)w);
                    plv_append_u64(out, b->words[w]);
                }
            }
        } else {
            plv_append_u8(out, PLV_SVM_BITMAP_RAW);
            plv_append_u32(out, (uint32_t)nw);
            for (uint64_t w = 0; w < nw; w++) {
                plv_append_u64(out, b->words[w]);
            }
        }
    }
    put_base(out, base);
}

/* Walks a BITMAP body; with apply, ORs the bits into bitmaps[]. */
static int walk_bitmap(const uint8_t *body, size_t len, const PlvMemView *mv,
                       PlvBitmap *bitmaps, PlvSvmBase *base, bool apply,
                       GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint32_t nr;

    if (!plv_read_u32(&c, &nr)) {
        return malformed(err, "short BITMAP");
    }
    /* Shape before meaning: garbage is MALFORMED, not a LAYOUT mismatch. */
    if (nr > PLV_MEMVIEW_MAX_REGIONS ||
        plv_reader_left(&c) / PLV_SVM_BITMAP_REG_LEN < nr) {
        return malformed(err, "BITMAP region count");
    }
    if (nr != plv_memview_n_regions(mv)) {
        g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_LAYOUT,
                    "peer has %u memory regions, we have %u", nr,
                    plv_memview_n_regions(mv));
        return -1;
    }
    for (unsigned r = 0; r < nr; r++) {
        const PlvMemRegion *reg = plv_memview_region_const(mv, r);
        uint64_t nw = plv_bitmap_n_words(reg->n_pages), n_pages;
        uint32_t id, page_size, n;
        uint8_t enc;
        int64_t last = -1;

        if (!plv_read_u32(&c, &id) || !plv_read_u32(&c, &page_size) ||
            !plv_read_u64(&c, &n_pages) || !plv_read_u8(&c, &enc) ||
            !plv_read_u32(&c, &n)) {
            return malformed(err, "short BITMAP region");
        }
        if (id != reg->id || page_size != reg->page_size ||
            n_pages != reg->n_pages) {
            g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_LAYOUT,
                        "region %u: peer has id %u, %u x %" PRIu64
                        ", we have id %u, %u x %" PRIu64, r, id, page_size,
                        n_pages, reg->id, reg->page_size, reg->n_pages);
            return -1;
        }
        if (enc == PLV_SVM_BITMAP_RAW) {
            if (n != nw || plv_reader_left(&c) / 8 < nw) {
                return malformed(err, "BITMAP raw word count");
            }
        } else if (enc == PLV_SVM_BITMAP_SPARSE) {
            if (n > nw || plv_reader_left(&c) / 12 < n) {
                return malformed(err, "BITMAP sparse entry count");
            }
        } else {
            return malformed(err, "BITMAP encoding");
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t w = i;
            uint64_t word = 0;

            if (enc == PLV_SVM_BITMAP_SPARSE) {
                plv_read_u32(&c, &w);
                if ((int64_t)w <= last || w >= nw) {
                    return malformed(err, "BITMAP sparse word index");
                }
                last = w;
            }
            plv_read_u64(&c, &word);
            if (w == nw - 1 && reg->n_pages % 64 &&
                (word >> (reg->n_pages % 64))) {
                return malformed(err, "BITMAP bit beyond the region");
            }
            if (apply) {
                bitmaps[r].words[w] |= word;
            }
        }
    }
    if (!plv_read_u64(&c, &base->len) || !read_hash(&c, &base->hash)) {
        return malformed(err, "BITMAP without its device-state base");
    }
    if (plv_reader_left(&c)) {
        return malformed(err, "trailing bytes after BITMAP");
    }
    return 0;
}

int plv_svm_decode_bitmap(const uint8_t *body, size_t len,
                          const PlvMemView *mv, PlvBitmap *bitmaps,
                          PlvSvmBase *base, GError **err)
{
    /* Validate everything first, so a bad message changes nothing. */
    if (walk_bitmap(body, len, mv, bitmaps, base, false, err) < 0) {
        return -1;
    }
    return walk_bitmap(body, len, mv, bitmaps, base, true, err);
}

void plv_svm_encode_blockreq(GByteArray *out, const PlvSvmHdr *h,
                             const uint32_t *index, const uint32_t *sb,
                             uint32_t count)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, count);
    for (uint32_t i = 0; i < count; i++) {
        plv_append_u32(out, index[i]);
        for (unsigned k = 0; k < PLV_PAGE_SUPERBLOCKS; k++) {
            plv_append_u32(out, sb[i * PLV_PAGE_SUPERBLOCKS + k]);
        }
    }
}

int plv_svm_decode_blockreq(const uint8_t *body, size_t len,
                            uint32_t n_union, uint32_t min_index,
                            uint32_t *index, uint32_t *sb, uint32_t *count,
                            GError **err)
{
    PlvReader c = plv_reader(body, len);
    size_t per = 4 * (1 + PLV_PAGE_SUPERBLOCKS);
    uint32_t n;

    if (!plv_read_u32(&c, &n)) {
        return malformed(err, "short BLOCKREQ");
    }
    if (n == 0 || n > PLV_SVM_MAX_BLOCKREQ || plv_reader_left(&c) != n * per) {
        return malformed(err, "BLOCKREQ count");
    }
    for (uint32_t i = 0; i < n; i++) {
        plv_read_u32(&c, &index[i]);
        if (index[i] < min_index || index[i] >= n_union) {
            return malformed(err, "BLOCKREQ index out of order or range");
        }
        min_index = index[i] + 1;
        for (unsigned k = 0; k < PLV_PAGE_SUPERBLOCKS; k++) {
            plv_read_u32(&c, &sb[i * PLV_PAGE_SUPERBLOCKS + k]);
        }
    }
    *count = n;
    return 0;
}

void plv_svm_encode_blockhashes(GByteArray *out, const PlvSvmHdr *h,
                                uint32_t first, const uint8_t *masks,
                                const uint32_t *blocks, uint32_t count)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, first);
    plv_append_u32(out, count);
    for (uint32_t i = 0; i < count; i++) {
        plv_append_u8(out, masks[i]);
        for (unsigned s = 0; s < PLV_PAGE_SUPERBLOCKS; s++) {
            if (!(masks[i] & (1u << s))) {
                continue;
            }
            for (unsigned b = 0; b < PLV_SUPERBLOCK_BLOCKS; b++) {
                plv_append_u32(out, blocks[(size_t)i * PLV_PAGE_BLOCKS +
                                    s * PLV_SUPERBLOCK_BLOCKS + b]);
            }
        }
    }
}

int plv_svm_decode_blockhashes(const uint8_t *body, size_t len,
                               uint32_t first, uint32_t count,
                               uint8_t *masks, uint32_t *blocks,
                               GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint32_t f, n;

    if (!plv_read_u32(&c, &f) || !plv_read_u32(&c, &n)) {
        return malformed(err, "short BLOCKHASHES");
    }
    if (f != first || n != count) {
        return malformed(err, "BLOCKHASHES for another request");
    }
    memset(blocks, 0, (size_t)n * PLV_PAGE_BLOCKS * sizeof(*blocks));
    for (uint32_t i = 0; i < n; i++) {
        if (!plv_read_u8(&c, &masks[i])) {
            return malformed(err, "BLOCKHASHES length");
        }
        for (unsigned s = 0; s < PLV_PAGE_SUPERBLOCKS; s++) {
            if (!(masks[i] & (1u << s))) {
                continue;
            }
            for (unsigned b = 0; b < PLV_SUPERBLOCK_BLOCKS; b++) {
                if (!plv_read_u32(&c, &blocks[(size_t)i * PLV_PAGE_BLOCKS +
                                         s * PLV_SUPERBLOCK_BLOCKS + b])) {
                    return malformed(err, "BLOCKHASHES length");
                }
            }
        }
    }
    if (plv_reader_left(&c)) {
        return malformed(err, "BLOCKHASHES length");
    }
    return 0;
}

void plv_svm_encode_hashes(GByteArray *out, const PlvSvmHdr *h,
                           uint32_t first, const PlvPageHash *hashes,
                           uint32_t count)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, first);
    plv_append_u32(out, count);
    for (uint32_t i = 0; i < count; i++) {
        put_hash(out, &hashes[i]);
    }
}

int plv_svm_decode_hashes(const uint8_t *body, size_t len,
                          uint32_t expect_first, uint32_t n_union,
                          PlvPageHash *out, uint32_t *count, GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint32_t first, n;

    if (!plv_read_u32(&c, &first) || !plv_read_u32(&c, &n)) {
        return malformed(err, "short HASHES");
    }
    if (first != expect_first || n > n_union - first || n == 0) {
        return malformed(err, "HASHES range");
    }
    if (plv_reader_left(&c) != (size_t)n * PLV_SVM_HASH_LEN) {
        return malformed(err, "HASHES length");
    }
    for (uint32_t i = 0; i < n; i++) {
        read_hash(&c, &out[first + i]);
    }
    *count = n;
    return 0;
}

size_t plv_svm_rec_data_len(const PlvSvmPageRec *rec, uint32_t page_size)
{
    switch (rec->kind) {
    case PLV_SVM_PAGE_DATA:
        return page_size;
    case PLV_SVM_PAGE_DELTA:
        return (size_t)__builtin_popcountll(rec->mask) *
               (page_size / PLV_PAGE_BLOCKS);
    default:
        return 0;
    }
}

size_t plv_svm_pages_head_len(const PlvSvmPageRec *recs, uint32_t count)
{
    size_t len = 4 + 1 + 4;

    for (uint32_t i = 0; i < count; i++) {
        len += PLV_SVM_PAGE_REC_LEN + (recs[i].kind == PLV_SVM_PAGE_DELTA ? 8 : 0);
    }
    return len;
}

void plv_svm_encode_pages_head(GByteArray *out, const PlvSvmHdr *h,
                               const PlvSvmPageRec *recs, uint32_t count,
                               uint8_t encoding, uint32_t data_len)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, count);
    plv_append_u8(out, encoding);
    plv_append_u32(out, data_len);
    for (uint32_t i = 0; i < count; i++) {
        plv_append_u32(out, recs[i].index);
        plv_append_u8(out, recs[i].kind);
        put_hash(out, &recs[i].hash);
        if (recs[i].kind == PLV_SVM_PAGE_DELTA) {
            plv_append_u64(out, recs[i].mask);
        }
    }
}

int plv_svm_decode_pages(const uint8_t *body, size_t len,
                         const PlvMemView *mv, const PlvSvmUnion *u,
                         uint32_t min_index, bool allow_delta, PlvZstd *z,
                         GByteArray *decoded, PlvSvmPageRec *recs,
                         uint32_t *count, GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint32_t n, data_len;
    uint64_t sum = 0;
    uint8_t enc;
    const uint8_t *data;
    GError *why = NULL;

    if (!plv_read_u32(&c, &n) || !plv_read_u8(&c, &enc) ||
        !plv_read_u32(&c, &data_len)) {
        return malformed(err, "short PAGES");
    }
    if (n == 0 || n > u->n || n > PLV_SVM_MAX_PAGE_RECS ||
        plv_reader_left(&c) / PLV_SVM_PAGE_REC_LEN < n) {
        return malformed(err, "PAGES count");
    }
    if (enc != PLV_SVM_ENC_RAW && enc != PLV_SVM_ENC_ZSTD) {
        return malformed(err, "PAGES encoding");
    }
    for (uint32_t i = 0; i < n; i++) {
        PlvSvmPageRec rec = { 0 };
        uint32_t ps;

        /*
         * Into a local first: the caller's room ends where the union does
         * (indices rise, so a record is stored only once its index proved
         * there is a slot for it).
         */
        if (!plv_read_u32(&c, &rec.index) || !plv_read_u8(&c, &rec.kind) ||
            !read_hash(&c, &rec.hash)) {
            return malformed(err, "short PAGES record");
        }
        if (rec.index < min_index || rec.index >= u->n) {
            return malformed(err, "PAGES index out of order or range");
        }
        min_index = rec.index + 1;
        if (rec.kind == PLV_SVM_PAGE_DELTA) {
            if (!allow_delta) {
                return malformed(err, "PAGES delta record not allowed here");
            }
            if (!plv_read_u64(&c, &rec.mask) || rec.mask == 0) {
                return malformed(err, "PAGES delta record mask");
            }
        } else if (rec.kind != PLV_SVM_PAGE_DATA &&
                   rec.kind != PLV_SVM_PAGE_ZERO) {
            return malformed(err, "PAGES record kind");
        }
        ps = plv_memview_region_const(mv, u->refs[rec.index].region)
             ->page_size;
        sum += plv_svm_rec_data_len(&rec, ps);
        recs[i] = rec;
    }
    if (sum != data_len || data_len > PLV_SVM_MAX_PAGES_DATA) {
        return malformed(err, "PAGES data length");
    }
    if (enc == PLV_SVM_ENC_RAW) {
        if (plv_reader_left(&c) != data_len) {
            return malformed(err, "PAGES data length");
        }
        data = body + c.off;
    } else {
        g_byte_array_set_size(decoded, data_len);
        if (plv_zstd_decompress(z, decoded->data, data_len, body + c.off,
                                plv_reader_left(&c), NULL, 0, &why) < 0) {
            g_set_error(err, PLV_SVM_ERROR, PLV_SVM_ERROR_MALFORMED,
                        "malformed syncvm message: PAGES data: %s",
                        why->message);
            g_error_free(why);
            return -1;
        }
        data = decoded->data;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ps = plv_memview_region_const(mv, u->refs[recs[i].index]
                                               .region)->page_size;
        size_t dl = plv_svm_rec_data_len(&recs[i], ps);

        if (dl) {
            recs[i].data = data;
            data += dl;
        }
    }
    *count = n;
    return 0;
}

void plv_svm_encode_devstate_head(GByteArray *out, const PlvSvmHdr *h,
                                  uint64_t offset)
{
    plv_svm_put_hdr(out, h);
    plv_append_u64(out, offset);
}

int plv_svm_decode_devstate(const uint8_t *body, size_t len,
                            uint64_t expect_offset, uint64_t max_len,
                            const uint8_t **data, size_t *data_len,
                            GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint64_t off;

    if (!plv_read_u64(&c, &off)) {
        return malformed(err, "short DEVSTATE");
    }
    if (off != expect_offset) {
        return malformed(err, "DEVSTATE offset");
    }
    if (plv_reader_left(&c) == 0 ||
        plv_reader_left(&c) > max_len - MIN(off, max_len)) {
        return malformed(err, "DEVSTATE length");
    }
    *data = body + c.off;
    *data_len = plv_reader_left(&c);
    return 0;
}

void plv_svm_encode_eof(GByteArray *out, const PlvSvmHdr *h,
                        const PlvSvmEof *e)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, e->n_pages);
    plv_append_u32(out, e->n_zero);
    plv_append_u64(out, e->devstate_len);
    put_hash(out, &e->union_digest);
    put_hash(out, &e->devstate_hash);
    plv_append_u8(out, e->devstate_enc);
    plv_append_u64(out, e->devstate_wire_len);
}

int plv_svm_decode_eof(const uint8_t *body, size_t len, PlvSvmEof *e,
                       GError **err)
{
    PlvReader c = plv_reader(body, len);

    if (!plv_read_u32(&c, &e->n_pages) || !plv_read_u32(&c, &e->n_zero) ||
        !plv_read_u64(&c, &e->devstate_len) ||
        !read_hash(&c, &e->union_digest) ||
        !read_hash(&c, &e->devstate_hash) ||
        !plv_read_u8(&c, &e->devstate_enc) ||
        !plv_read_u64(&c, &e->devstate_wire_len) || plv_reader_left(&c)) {
        return malformed(err, "EOF length");
    }
    if (e->n_zero > e->n_pages) {
        return malformed(err, "EOF zero count");
    }
    if (e->devstate_enc > PLV_SVM_ENC_ZSTD_BASE ||
        (e->devstate_enc == PLV_SVM_ENC_RAW &&
         e->devstate_wire_len != e->devstate_len)) {
        return malformed(err, "EOF device-state encoding");
    }
    return 0;
}

void plv_svm_encode_ack(GByteArray *out, const PlvSvmHdr *h, uint32_t n_pages,
                        uint64_t devstate_len)
{
    plv_svm_put_hdr(out, h);
    plv_append_u32(out, n_pages);
    plv_append_u64(out, devstate_len);
}

int plv_svm_decode_ack(const uint8_t *body, size_t len, uint32_t *n_pages,
                       uint64_t *devstate_len, GError **err)
{
    PlvReader c = plv_reader(body, len);

    if (!plv_read_u32(&c, n_pages) || !plv_read_u64(&c, devstate_len) ||
        plv_reader_left(&c)) {
        return malformed(err, "ACK length");
    }
    return 0;
}

void plv_svm_encode_nack(GByteArray *out, const PlvSvmHdr *h, uint32_t code,
                         const char *reason)
{
    size_t n = MIN(strlen(reason), PLV_SVM_MAX_REASON);

    plv_svm_put_hdr(out, h);
    plv_append_u32(out, code);
    plv_append_u16(out, (uint16_t)n);
    g_byte_array_append(out, (const guint8 *)reason, n);
}

int plv_svm_decode_nack(const uint8_t *body, size_t len, uint32_t *code,
                        char **reason, GError **err)
{
    PlvReader c = plv_reader(body, len);
    uint16_t n;
    const uint8_t *s;

    if (!plv_read_u32(&c, code) || !plv_read_u16(&c, &n) ||
        n > PLV_SVM_MAX_REASON || !plv_read_bytes(&c, n, &s) ||
        plv_reader_left(&c)) {
        return malformed(err, "NACK length");
    }
    *reason = g_strndup((const char *)s, n);
    /* The reason ends up in logs: keep it printable. */
    for (char *p = *reason; *p; p++) {
        if (!g_ascii_isprint(*p)) {
            *p = '?';
        }
    }
    return 0;
}

const char *plv_svm_msg_name(uint16_t type)
{
    switch (type) {
    case PLV_SVM_MSG_BITMAP:   return "BITMAP";
    case PLV_SVM_MSG_HASHES:   return "HASHES";
    case PLV_SVM_MSG_PAGES:    return "PAGES";
    case PLV_SVM_MSG_DEVSTATE: return "DEVSTATE";
    case PLV_SVM_MSG_EOF:      return "EOF";
    case PLV_SVM_MSG_ACK:      return "ACK";
    case PLV_SVM_MSG_NACK:     return "NACK";
    case PLV_SVM_MSG_BLOCKREQ: return "BLOCKREQ";
    case PLV_SVM_MSG_BLOCKHASHES: return "BLOCKHASHES";
    default:                   return "unknown";
    }
}

PlvSvmBytesKind plv_svm_bytes_kind(uint16_t type)
{
    switch (type) {
    case PLV_SVM_MSG_BITMAP:      return PLV_SVM_BYTES_BITMAP;
    case PLV_SVM_MSG_HASHES:
    case PLV_SVM_MSG_BLOCKHASHES: return PLV_SVM_BYTES_FINGERPRINTS;
    case PLV_SVM_MSG_PAGES:       return PLV_SVM_BYTES_PAGES;
    case PLV_SVM_MSG_DEVSTATE:    return PLV_SVM_BYTES_DEVSTATE;
    default:                      return PLV_SVM_BYTES_CONTROL;
    }
}
