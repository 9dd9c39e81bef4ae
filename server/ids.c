/*
 * ids: etcd's member and cluster ID derivation (see ids.h).
 *
 * Both IDs are the first 8 bytes, read big endian, of a SHA-1 digest:
 *   member:  SHA-1(url_1 || url_2 || ... || token [|| decimal unix time])
 *            with the peer URLs sorted bytewise (like strcmp);
 *   cluster: SHA-1(id_1 || id_2 || ...), each member ID as 8 big-endian
 *            bytes, sorted ascending.
 * The inputs are fed to the digest in sorted order without copying or
 * sorting the caller's arrays: a selection walk picks the next element in
 * (value, index) order each time, which is O(n^2) for the handful of
 * members a cluster has.
 */
#include "server/ids.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "server/errors.h"

/* Index of the smallest URL greater than (@prev, @prev_i) in
 * (string, index) order, or n if none. @prev NULL means "start". */
static size_t next_url(const char *const *urls, size_t n, const char *prev,
                       size_t prev_i)
{
    size_t best = n, i;
    for (i = 0; i < n; i++) {
        int c;
        if (prev != NULL) {
            c = strcmp(urls[i], prev);
            if (c < 0 || (c == 0 && i <= prev_i)) {
                continue;
            }
        }
        if (best == n) {
            best = i;
            continue;
        }
        c = strcmp(urls[i], urls[best]);
        if (c < 0) {
            best = i;
        }
    }
    return best;
}

static size_t next_id(const uint64_t *ids, size_t n, bool started,
                      uint64_t prev, size_t prev_i)
{
    size_t best = n, i;
    for (i = 0; i < n; i++) {
        if (started && (ids[i] < prev || (ids[i] == prev && i <= prev_i))) {
            continue;
        }
        if (best == n || ids[i] < ids[best]) {
            best = i;
        }
    }
    return best;
}

static uint64_t digest_prefix(const unsigned char *md)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++) {
        v = (v << 8) | md[i];
    }
    return v;
}

int ids_member_id(const char *const *peer_urls, size_t n, const char *token,
                  int64_t unix_time, uint64_t *id)
{
    EVP_MD_CTX *ctx;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *prev = NULL;
    size_t prev_i = 0, k;
    int ok;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return IK_ENOMEM;
    }
    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    for (k = 0; ok && k < n; k++) {
        size_t i = next_url(peer_urls, n, prev, prev_i);
        ok = EVP_DigestUpdate(ctx, peer_urls[i], strlen(peer_urls[i]));
        prev = peer_urls[i];
        prev_i = i;
    }
    if (ok && token != NULL) {
        ok = EVP_DigestUpdate(ctx, token, strlen(token));
    }
    if (ok && unix_time != 0) {
        char buf[24];
        int len = snprintf(buf, sizeof(buf), "%" PRId64, unix_time);
        ok = EVP_DigestUpdate(ctx, buf, (size_t)len);
    }
    if (ok) {
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 8) {
        return IK_ENOMEM;
    }
    *id = digest_prefix(md);
    return 0;
}

int ids_cluster_id(const uint64_t *member_ids, size_t n, uint64_t *id)
{
    EVP_MD_CTX *ctx;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint64_t prev = 0;
    size_t prev_i = 0, k;
    int ok;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return IK_ENOMEM;
    }
    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    for (k = 0; ok && k < n; k++) {
        size_t i = next_id(member_ids, n, k > 0, prev, prev_i);
        unsigned char be[8];
        int b;
        for (b = 0; b < 8; b++) {
            be[b] = (unsigned char)(member_ids[i] >> (56 - 8 * b));
        }
        ok = EVP_DigestUpdate(ctx, be, sizeof(be));
        prev = member_ids[i];
        prev_i = i;
    }
    if (ok) {
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 8) {
        return IK_ENOMEM;
    }
    *id = digest_prefix(md);
    return 0;
}

char *ids_format(uint64_t id, char *buf)
{
    snprintf(buf, IDS_STRLEN, "%" PRIx64, id);
    return buf;
}

int ids_parse(const char *s, uint64_t *id)
{
    uint64_t v = 0;
    size_t i, n = strlen(s);
    if (n == 0 || n > 16) {
        return IK_EINVAL;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return IK_EINVAL;
        }
        v = (v << 4) | (uint64_t)d;
    }
    *id = v;
    return 0;
}
