/* ctl_snapshot.c: ikadactl snapshot save/status/restore (see client/ctl.h).
 * Not implemented yet: no snapshot commands are registered, so ikadactl
 * answers "snapshot" like an unknown command. */
#include "client/ctl.h"

const struct ctl_command ctl_snapshot_commands[] = {{0}};
