/*
 * ids: etcd's member and cluster ID derivation.
 *
 * etcd does not pick IDs at random: a member's ID is the first 8 bytes
 * (big endian) of the SHA-1 of its peer URLs (sorted bytewise and
 * concatenated without separator), followed by the cluster token and,
 * for members added at runtime, the decimal Unix time of the addition.
 * The cluster ID is the first 8 bytes of the SHA-1 of the member IDs of
 * the bootstrap cluster, sorted ascending, each as 8 big-endian bytes.
 * Computing them the same way makes ikada report the IDs etcd would for
 * the same --initial-cluster and --initial-cluster-token.
 *
 * Members added with MemberAdd get an ID from their peer URLs, an EMPTY
 * token and the current time (that is what etcd does).
 *
 * No I/O. SHA-1 comes from OpenSSL's libcrypto.
 */
#ifndef IKADA_IDS_H
#define IKADA_IDS_H

#include <stddef.h>
#include <stdint.h>

/* Room for an ID in etcd's text form: up to 16 hex digits and a NUL. */
#define IDS_STRLEN 17

/*
 * Member ID from @n peer URLs (need not be sorted: sorted here, the array
 * is not modified), @token (NULL is treated as "") and @unix_time (seconds
 * since the epoch; 0 means "no time", as for bootstrap members).
 * The URLs must be in their canonical text form (as config_url_parse()
 * leaves them), since the bytes are hashed as they are.
 * Returns 0 and sets *@id, or IK_ENOMEM (libcrypto failed to allocate);
 * *@id is untouched on error. Note the result can in theory be 0, which
 * etcd refuses as a member ID; callers check.
 */
int ids_member_id(const char *const *peer_urls, size_t n, const char *token,
                  int64_t unix_time, uint64_t *id);

/*
 * Cluster ID from the @n member IDs of the bootstrap cluster (any order;
 * @member_ids is not modified). Returns 0 and sets *@id, or IK_ENOMEM.
 */
int ids_cluster_id(const uint64_t *member_ids, size_t n, uint64_t *id);

/* etcd's text form of an ID: lower-case hex without leading zeros
 * ("8e9e05c52164694d"). Writes a NUL-terminated string to @buf
 * (IDS_STRLEN bytes) and returns @buf. */
char *ids_format(uint64_t id, char *buf);

/* Parse etcd's hex form (1..16 hex digits, either case, no prefix).
 * Returns 0, or IK_EINVAL for anything else (*@id untouched). */
int ids_parse(const char *s, uint64_t *id);

#endif /* IKADA_IDS_H */
