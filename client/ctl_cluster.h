/*
 * ctl_cluster: ikadactl's member/endpoint/alarm/defrag/move-leader commands
 * (the table ctl_cluster_commands, declared in client/ctl.h) and the small
 * helpers the lease, lock and check commands share with them: etcdctl's
 * (Go's) number parsing and error texts, Go-style JSON and duration
 * formatting, printing of the clientv3 wrapper types.
 */
#ifndef IKADA_CTL_CLUSTER_H
#define IKADA_CTL_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/ctl.h"

/*
 * Go's strconv.ParseInt(s, base, 64) / ParseUint(s, base, 64) for base 10
 * or 16 (no prefixes, no underscores). Return 0 and *out, or -1 with
 * Go's error text in @err ("strconv.ParseInt: parsing \"zz\": invalid
 * syntax", "... value out of range").
 */
int ctl_cluster_parse_int64(const char *s, int base, int64_t *out, char *err,
                            size_t err_size);
int ctl_cluster_parse_uint64(const char *s, int base, uint64_t *out, char *err,
                             size_t err_size);

/* Go's strconv.Quote(s) into @f (what %q prints for a string). */
void ctl_cluster_go_quote(FILE *f, const char *s, size_t len);

/* A JSON string as Go's encoding/json writes it (HTML-escaped). */
void ctl_cluster_json_string(FILE *f, const char *s, size_t len);

/* Go's time.Duration.String() of @ns into @buf; returns @buf. */
const char *ctl_cluster_go_duration(char *buf, size_t size, int64_t ns);

/*
 * The error text etcdctl shows for a failed call (what follows "Error: ",
 * e.g. "etcdserver: requested lease not found", "context deadline
 * exceeded"). Lines ctl_fail_status() prints before its "Error:" line
 * (the client's log lines) are printed to ctl->err now. Returns a malloc'd
 * string (never NULL on success; NULL only when out of memory); caller
 * frees.
 */
char *ctl_cluster_error_text(struct ctl *ctl, int rc,
                             const struct ikclient_status *st);

/* ctl_print_json() of @msg as a string without the newline (malloc'd). */
char *ctl_cluster_json_of(struct ctl *ctl, const ProtobufCMessage *msg);

/* The fields of a response header as the clientv3 wrapper types embed it
 * in JSON: "cluster_id":..,"member_id":..,"revision":..,"raft_term":..
 * (zero ones left out), each preceded by ',' unless *first; clears
 * *first when it wrote something. NULL header: nothing. */
void ctl_cluster_json_header(FILE *f, const Etcdserverpb__ResponseHeader *h,
                             bool *first);

/* The "ClusterID"/"MemberID"/"Revision"/"RaftTerm" lines of -w fields.
 * A NULL header is what etcdctl dereferences: prints Go's nil pointer
 * panic to ctl->err and returns 2 (its exit code); otherwise returns 0. */
int ctl_cluster_fields_header(struct ctl *ctl,
                              const Etcdserverpb__ResponseHeader *h);

/* Go's nil pointer dereference panic on ctl->err; returns 2. */
int ctl_cluster_nil_panic(struct ctl *ctl);

/* "Error: <format> not supported as output format", CTL_EXIT_BAD_FEATURE. */
int ctl_cluster_unsupported(struct ctl *ctl);

/*
 * display.Get(resp) of etcdctl for the current -w format (simple: key and
 * value lines; json; protobuf; fields; table: not supported). Returns 0
 * or the exit code to exit with.
 */
int ctl_cluster_print_get(struct ctl *ctl,
                          const Etcdserverpb__RangeResponse *resp);

#endif /* IKADA_CTL_CLUSTER_H */
