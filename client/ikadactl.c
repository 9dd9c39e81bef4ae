/*
 * ikadactl: ikada's etcdctl 3.4-compatible CLI (see client/ctl.h).
 *
 * ikadactl identifies itself exactly as etcdctl 3.4.23 does (help texts,
 * "etcdctl version: 3.4.23", error messages naming "etcdctl"), so that
 * scripts and tests written against etcdctl see the same bytes.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/ctl.h"

struct ctl_help {
    const char *name;
    int with_global; /* the text stops before GLOBAL OPTIONS */
    const char *text;
};

/* generated from etcdctl 3.4.23's --help output */
const char ctl_help_global_text[] =
    "GLOBAL OPTIONS:\n"
    "      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure "
    "servers using this CA bundle\n"
    "      --cert=\"\"\t\t\t\t\tidentify secure client using this TLS "
    "certificate file\n"
    "      --command-timeout=5s\t\t\ttimeout for short running command "
    "(excluding dial timeout)\n"
    "      --debug[=false]\t\t\t\tenable client-side debug logging\n"
    "      --dial-timeout=2s\t\t\t\tdial timeout for client connections\n"
    "  -d, --discovery-srv=\"\"\t\t\tdomain name to query for SRV records "
    "describing cluster endpoints\n"
    "      --discovery-srv-name=\"\"\t\t\tservice name to query when using DNS "
    "discovery\n"
    "      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"
    "      --hex[=false]\t\t\t\tprint byte strings as hex encoded strings\n"
    "      --insecure-discovery[=true]\t\taccept insecure SRV records "
    "describing cluster endpoints\n"
    "      --insecure-skip-tls-verify[=false]\tskip server certificate "
    "verification (CAUTION: this option should be enabled only for testing "
    "purposes)\n"
    "      --insecure-transport[=true]\t\tdisable transport security for "
    "client connections\n"
    "      --keepalive-time=2s\t\t\tkeepalive time for client connections\n"
    "      --keepalive-timeout=6s\t\t\tkeepalive timeout for client "
    "connections\n"
    "      --key=\"\"\t\t\t\t\tidentify secure client using this TLS key file\n"
    "      --password=\"\"\t\t\t\tpassword for authentication (if this option "
    "is used, --user option shouldn't include password)\n"
    "      --user=\"\"\t\t\t\t\tusername[:password] for authentication (prompt "
    "if password is not supplied)\n"
    "  -w, --write-out=\"simple\"\t\t\tset the output format (fields, json, "
    "protobuf, simple, table)\n"
    "\n";

static const char ctl_help_root[] =
    "NAME:\n"
    "\tetcdctl - A simple command line client for etcd3.\n"
    "\n"
    "USAGE:\n"
    "\tetcdctl [flags]\n"
    "\n"
    "VERSION:\n"
    "\t3.4.23\n"
    "\n"
    "API VERSION:\n"
    "\t3.4\n"
    "\n"
    "\n"
    "COMMANDS:\n"
    "\talarm disarm\t\tDisarms all alarms\n"
    "\talarm list\t\tLists all alarms\n"
    "\tauth disable\t\tDisables authentication\n"
    "\tauth enable\t\tEnables authentication\n"
    "\tcheck datascale\t\tCheck the memory usage of holding data for different "
    "workloads on a given server endpoint.\n"
    "\tcheck perf\t\tCheck the performance of the etcd cluster\n"
    "\tcompaction\t\tCompacts the event history in etcd\n"
    "\tcompletion bash\t\tGenerate the autocompletion script for bash\n"
    "\tcompletion fish\t\tGenerate the autocompletion script for fish\n"
    "\tcompletion powershell\tGenerate the autocompletion script for "
    "powershell\n"
    "\tcompletion zsh\t\tGenerate the autocompletion script for zsh\n"
    "\tdefrag\t\t\tDefragments the storage of the etcd members with given "
    "endpoints\n"
    "\tdel\t\t\tRemoves the specified key or range of keys [key, range_end)\n"
    "\telect\t\t\tObserves and participates in leader election\n"
    "\tendpoint hashkv\t\tPrints the KV history hash for each endpoint in "
    "--endpoints\n"
    "\tendpoint health\t\tChecks the healthiness of endpoints specified in "
    "`--endpoints` flag\n"
    "\tendpoint status\t\tPrints out the status of endpoints specified in "
    "`--endpoints` flag\n"
    "\tget\t\t\tGets the key or a range of keys\n"
    "\thelp\t\t\tHelp about any command\n"
    "\tlease grant\t\tCreates leases\n"
    "\tlease keep-alive\tKeeps leases alive (renew)\n"
    "\tlease list\t\tList all active leases\n"
    "\tlease revoke\t\tRevokes leases\n"
    "\tlease timetolive\tGet lease information\n"
    "\tlock\t\t\tAcquires a named lock\n"
    "\tmake-mirror\t\tMakes a mirror at the destination etcd cluster\n"
    "\tmember add\t\tAdds a member into the cluster\n"
    "\tmember list\t\tLists all members in the cluster\n"
    "\tmember promote\t\tPromotes a non-voting member in the cluster\n"
    "\tmember remove\t\tRemoves a member from the cluster\n"
    "\tmember update\t\tUpdates a member in the cluster\n"
    "\tmigrate\t\t\tMigrates keys in a v2 store to a mvcc store\n"
    "\tmove-leader\t\tTransfers leadership to another etcd cluster member.\n"
    "\tput\t\t\tPuts the given key into the store\n"
    "\trole add\t\tAdds a new role\n"
    "\trole delete\t\tDeletes a role\n"
    "\trole get\t\tGets detailed information of a role\n"
    "\trole grant-permission\tGrants a key to a role\n"
    "\trole list\t\tLists all roles\n"
    "\trole revoke-permission\tRevokes a key from a role\n"
    "\tsnapshot restore\tRestores an etcd member snapshot to an etcd "
    "directory\n"
    "\tsnapshot save\t\tStores an etcd node backend snapshot to a given file\n"
    "\tsnapshot status\t\tGets backend snapshot status of a given file\n"
    "\ttxn\t\t\tTxn processes all the requests in one transaction\n"
    "\tuser add\t\tAdds a new user\n"
    "\tuser delete\t\tDeletes a user\n"
    "\tuser get\t\tGets detailed information of a user\n"
    "\tuser grant-role\t\tGrants a role to a user\n"
    "\tuser list\t\tLists all users\n"
    "\tuser passwd\t\tChanges password of user\n"
    "\tuser revoke-role\tRevokes a role from a user\n"
    "\tversion\t\t\tPrints the version of etcdctl\n"
    "\twatch\t\t\tWatches events stream on keys or prefixes\n"
    "\n"
    "OPTIONS:\n"
    "      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure "
    "servers using this CA bundle\n"
    "      --cert=\"\"\t\t\t\t\tidentify secure client using this TLS "
    "certificate file\n"
    "      --command-timeout=5s\t\t\ttimeout for short running command "
    "(excluding dial timeout)\n"
    "      --debug[=false]\t\t\t\tenable client-side debug logging\n"
    "      --dial-timeout=2s\t\t\t\tdial timeout for client connections\n"
    "  -d, --discovery-srv=\"\"\t\t\tdomain name to query for SRV records "
    "describing cluster endpoints\n"
    "      --discovery-srv-name=\"\"\t\t\tservice name to query when using DNS "
    "discovery\n"
    "      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"
    "  -h, --help[=false]\t\t\t\thelp for etcdctl\n"
    "      --hex[=false]\t\t\t\tprint byte strings as hex encoded strings\n"
    "      --insecure-discovery[=true]\t\taccept insecure SRV records "
    "describing cluster endpoints\n"
    "      --insecure-skip-tls-verify[=false]\tskip server certificate "
    "verification (CAUTION: this option should be enabled only for testing "
    "purposes)\n"
    "      --insecure-transport[=true]\t\tdisable transport security for "
    "client connections\n"
    "      --keepalive-time=2s\t\t\tkeepalive time for client connections\n"
    "      --keepalive-timeout=6s\t\t\tkeepalive timeout for client "
    "connections\n"
    "      --key=\"\"\t\t\t\t\tidentify secure client using this TLS key file\n"
    "      --password=\"\"\t\t\t\tpassword for authentication (if this option "
    "is used, --user option shouldn't include password)\n"
    "      --user=\"\"\t\t\t\t\tusername[:password] for authentication (prompt "
    "if password is not supplied)\n"
    "  -w, --write-out=\"simple\"\t\t\tset the output format (fields, json, "
    "protobuf, simple, table)\n"
    "\n";

static const struct ctl_help ctl_helps[] = {
    {"alarm", 1,
     "NAME:\n"
     "\talarm - Alarm related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl alarm <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tdisarm\tDisarms all alarms\n"
     "\tlist\tLists all alarms\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for alarm\n"
     "\n"},
    {"auth", 1,
     "NAME:\n"
     "\tauth - Enable or disable authentication\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl auth <enable or disable> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tdisable\tDisables authentication\n"
     "\tenable\tEnables authentication\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for auth\n"
     "\n"},
    {"check", 1,
     "NAME:\n"
     "\tcheck - commands for checking properties of the etcd cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl check <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tdatascale\tCheck the memory usage of holding data for different "
     "workloads on a given server endpoint.\n"
     "\tperf\t\tCheck the performance of the etcd cluster\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for check\n"
     "\n"},
    {"completion", 1,
     "NAME:\n"
     "\tcompletion - Generate the autocompletion script for the specified "
     "shell\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl completion [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tbash\t\tGenerate the autocompletion script for bash\n"
     "\tfish\t\tGenerate the autocompletion script for fish\n"
     "\tpowershell\tGenerate the autocompletion script for powershell\n"
     "\tzsh\t\tGenerate the autocompletion script for zsh\n"
     "\n"
     "DESCRIPTION:\n"
     "\tGenerate the autocompletion script for etcdctl for the specified "
     "shell.\n"
     "\tSee each sub-command's help for details on how to use the generated "
     "script.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for completion\n"
     "\n"},
    {"endpoint", 1,
     "NAME:\n"
     "\tendpoint - Endpoint related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl endpoint <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\thashkv\tPrints the KV history hash for each endpoint in --endpoints\n"
     "\thealth\tChecks the healthiness of endpoints specified in `--endpoints` "
     "flag\n"
     "\tstatus\tPrints out the status of endpoints specified in `--endpoints` "
     "flag\n"
     "\n"
     "OPTIONS:\n"
     "      --cluster[=false]\tuse all endpoints from the cluster member list\n"
     "  -h, --help[=false]\thelp for endpoint\n"
     "\n"},
    {"lease", 1,
     "NAME:\n"
     "\tlease - Lease related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tgrant\t\tCreates leases\n"
     "\tkeep-alive\tKeeps leases alive (renew)\n"
     "\tlist\t\tList all active leases\n"
     "\trevoke\t\tRevokes leases\n"
     "\ttimetolive\tGet lease information\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for lease\n"
     "\n"},
    {"member", 1,
     "NAME:\n"
     "\tmember - Membership related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tadd\tAdds a member into the cluster\n"
     "\tlist\tLists all members in the cluster\n"
     "\tpromote\tPromotes a non-voting member in the cluster\n"
     "\tremove\tRemoves a member from the cluster\n"
     "\tupdate\tUpdates a member in the cluster\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for member\n"
     "\n"},
    {"role", 1,
     "NAME:\n"
     "\trole - Role related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tadd\t\t\tAdds a new role\n"
     "\tdelete\t\t\tDeletes a role\n"
     "\tget\t\t\tGets detailed information of a role\n"
     "\tgrant-permission\tGrants a key to a role\n"
     "\tlist\t\t\tLists all roles\n"
     "\trevoke-permission\tRevokes a key from a role\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for role\n"
     "\n"},
    {"snapshot", 1,
     "NAME:\n"
     "\tsnapshot - Manages etcd node snapshots\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl snapshot <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\trestore\tRestores an etcd member snapshot to an etcd directory\n"
     "\tsave\tStores an etcd node backend snapshot to a given file\n"
     "\tstatus\tGets backend snapshot status of a given file\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for snapshot\n"
     "\n"},
    {"user", 1,
     "NAME:\n"
     "\tuser - User related commands\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user <subcommand> [flags]\n"
     "\n"
     "API VERSION:\n"
     "\t3.4\n"
     "\n"
     "\n"
     "COMMANDS:\n"
     "\tadd\t\tAdds a new user\n"
     "\tdelete\t\tDeletes a user\n"
     "\tget\t\tGets detailed information of a user\n"
     "\tgrant-role\tGrants a role to a user\n"
     "\tlist\t\tLists all users\n"
     "\tpasswd\t\tChanges password of user\n"
     "\trevoke-role\tRevokes a role from a user\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for user\n"
     "\n"},
    {"alarm disarm", 1,
     "NAME:\n"
     "\talarm disarm - Disarms all alarms\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl alarm disarm [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for disarm\n"
     "\n"},
    {"alarm list", 1,
     "NAME:\n"
     "\talarm list - Lists all alarms\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl alarm list [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for list\n"
     "\n"},
    {"auth disable", 1,
     "NAME:\n"
     "\tauth disable - Disables authentication\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl auth disable [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for disable\n"
     "\n"},
    {"auth enable", 1,
     "NAME:\n"
     "\tauth enable - Enables authentication\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl auth enable [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for enable\n"
     "\n"},
    {"check datascale", 1,
     "NAME:\n"
     "\tcheck datascale - Check the memory usage of holding data for different "
     "workloads on a given server endpoint.\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl check datascale [options] [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tIf no endpoint is provided, localhost will be used. If multiple "
     "endpoints are provided, first endpoint will be used.\n"
     "\n"
     "OPTIONS:\n"
     "      --auto-compact[=false]\t\t\tCompact storage with last revision "
     "after test is finished.\n"
     "      --auto-defrag[=false]\t\t\tDefragment storage after test is "
     "finished.\n"
     "  -h, --help[=false]\t\t\t\thelp for datascale\n"
     "      --load=\"s\"\t\t\t\tThe datascale check's workload model. Accepted "
     "workloads: s(small), m(medium), l(large), xl(xLarge)\n"
     "      --prefix=\"/etcdctl-check-datascale/\"\tThe prefix for writing the "
     "datascale check's keys.\n"
     "\n"},
    {"check perf", 1,
     "NAME:\n"
     "\tcheck perf - Check the performance of the etcd cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl check perf [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --auto-compact[=false]\t\tCompact storage with last revision after "
     "test is finished.\n"
     "      --auto-defrag[=false]\t\tDefragment storage after test is "
     "finished.\n"
     "  -h, --help[=false]\t\t\thelp for perf\n"
     "      --load=\"s\"\t\t\tThe performance check's workload model. Accepted "
     "workloads: s(small), m(medium), l(large), xl(xLarge)\n"
     "      --prefix=\"/etcdctl-check-perf/\"\tThe prefix for writing the "
     "performance check's keys.\n"
     "\n"},
    {"compaction", 1,
     "NAME:\n"
     "\tcompaction - Compacts the event history in etcd\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl compaction [options] <revision> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for compaction\n"
     "      --physical[=false]\t'true' to wait for compaction to physically "
     "remove all old revisions\n"
     "\n"},
    {"completion bash", 1,
     "NAME:\n"
     "\tcompletion bash - Generate the autocompletion script for bash\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl completion bash\n"
     "\n"
     "DESCRIPTION:\n"
     "\tGenerate the autocompletion script for the bash shell.\n"
     "\t\n"
     "\tThis script depends on the 'bash-completion' package.\n"
     "\tIf it is not installed already, you can install it via your OS's "
     "package manager.\n"
     "\t\n"
     "\tTo load completions in your current shell session:\n"
     "\t\n"
     "\t\tsource <(etcdctl completion bash)\n"
     "\t\n"
     "\tTo load completions for every new session, execute once:\n"
     "\t\n"
     "\t#### Linux:\n"
     "\t\n"
     "\t\tetcdctl completion bash > /etc/bash_completion.d/etcdctl\n"
     "\t\n"
     "\t#### macOS:\n"
     "\t\n"
     "\t\tetcdctl completion bash > $(brew "
     "--prefix)/etc/bash_completion.d/etcdctl\n"
     "\t\n"
     "\tYou will need to start a new shell for this setup to take effect.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for bash\n"
     "      --no-descriptions[=false]\tdisable completion descriptions\n"
     "\n"},
    {"completion fish", 1,
     "NAME:\n"
     "\tcompletion fish - Generate the autocompletion script for fish\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl completion fish [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tGenerate the autocompletion script for the fish shell.\n"
     "\t\n"
     "\tTo load completions in your current shell session:\n"
     "\t\n"
     "\t\tetcdctl completion fish | source\n"
     "\t\n"
     "\tTo load completions for every new session, execute once:\n"
     "\t\n"
     "\t\tetcdctl completion fish > ~/.config/fish/completions/etcdctl.fish\n"
     "\t\n"
     "\tYou will need to start a new shell for this setup to take effect.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for fish\n"
     "      --no-descriptions[=false]\tdisable completion descriptions\n"
     "\n"},
    {"completion powershell", 1,
     "NAME:\n"
     "\tcompletion powershell - Generate the autocompletion script for "
     "powershell\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl completion powershell [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tGenerate the autocompletion script for powershell.\n"
     "\t\n"
     "\tTo load completions in your current shell session:\n"
     "\t\n"
     "\t\tetcdctl completion powershell | Out-String | Invoke-Expression\n"
     "\t\n"
     "\tTo load completions for every new session, add the output of the above "
     "command\n"
     "\tto your powershell profile.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for powershell\n"
     "      --no-descriptions[=false]\tdisable completion descriptions\n"
     "\n"},
    {"completion zsh", 1,
     "NAME:\n"
     "\tcompletion zsh - Generate the autocompletion script for zsh\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl completion zsh [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tGenerate the autocompletion script for the zsh shell.\n"
     "\t\n"
     "\tIf shell completion is not already enabled in your environment you "
     "will need\n"
     "\tto enable it.  You can execute the following once:\n"
     "\t\n"
     "\t\techo \"autoload -U compinit; compinit\" >> ~/.zshrc\n"
     "\t\n"
     "\tTo load completions in your current shell session:\n"
     "\t\n"
     "\t\tsource <(etcdctl completion zsh); compdef _etcdctl etcdctl\n"
     "\t\n"
     "\tTo load completions for every new session, execute once:\n"
     "\t\n"
     "\t#### Linux:\n"
     "\t\n"
     "\t\tetcdctl completion zsh > \"${fpath[1]}/_etcdctl\"\n"
     "\t\n"
     "\t#### macOS:\n"
     "\t\n"
     "\t\tetcdctl completion zsh > $(brew "
     "--prefix)/share/zsh/site-functions/_etcdctl\n"
     "\t\n"
     "\tYou will need to start a new shell for this setup to take effect.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for zsh\n"
     "      --no-descriptions[=false]\tdisable completion descriptions\n"
     "\n"},
    {"defrag", 1,
     "NAME:\n"
     "\tdefrag - Defragments the storage of the etcd members with given "
     "endpoints\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl defrag [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --cluster[=false]\tuse all endpoints from the cluster member list\n"
     "      --data-dir=\"\"\tOptional. If present, defragments a data "
     "directory not in use by etcd.\n"
     "  -h, --help[=false]\thelp for defrag\n"
     "\n"},
    {"del", 1,
     "NAME:\n"
     "\tdel - Removes the specified key or range of keys [key, range_end)\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl del [options] <key> [range_end] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --from-key[=false]\tdelete keys that are greater than or equal to "
     "the given key using byte compare\n"
     "  -h, --help[=false]\t\thelp for del\n"
     "      --prefix[=false]\t\tdelete keys with matching prefix\n"
     "      --prev-kv[=false]\t\treturn deleted key-value pairs\n"
     "\n"},
    {"elect", 1,
     "NAME:\n"
     "\telect - Observes and participates in leader election\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl elect <election-name> [proposal] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for elect\n"
     "  -l, --listen[=false]\tobservation mode\n"
     "\n"},
    {"endpoint hashkv", 0,
     "NAME:\n"
     "\tendpoint hashkv - Prints the KV history hash for each endpoint in "
     "--endpoints\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl endpoint hashkv [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for hashkv\n"
     "      --rev=0\t\tmaximum revision to hash (default: all revisions)\n"
     "\n"
     "GLOBAL OPTIONS:\n"
     "      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure "
     "servers using this CA bundle\n"
     "      --cert=\"\"\t\t\t\t\tidentify secure client using this TLS "
     "certificate file\n"
     "      --cluster[=false]\t\t\t\tuse all endpoints from the cluster member "
     "list\n"
     "      --command-timeout=5s\t\t\ttimeout for short running command "
     "(excluding dial timeout)\n"
     "      --debug[=false]\t\t\t\tenable client-side debug logging\n"
     "      --dial-timeout=2s\t\t\t\tdial timeout for client connections\n"
     "  -d, --discovery-srv=\"\"\t\t\tdomain name to query for SRV records "
     "describing cluster endpoints\n"
     "      --discovery-srv-name=\"\"\t\t\tservice name to query when using "
     "DNS discovery\n"
     "      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"
     "      --hex[=false]\t\t\t\tprint byte strings as hex encoded strings\n"
     "      --insecure-discovery[=true]\t\taccept insecure SRV records "
     "describing cluster endpoints\n"
     "      --insecure-skip-tls-verify[=false]\tskip server certificate "
     "verification (CAUTION: this option should be enabled only for testing "
     "purposes)\n"
     "      --insecure-transport[=true]\t\tdisable transport security for "
     "client connections\n"
     "      --keepalive-time=2s\t\t\tkeepalive time for client connections\n"
     "      --keepalive-timeout=6s\t\t\tkeepalive timeout for client "
     "connections\n"
     "      --key=\"\"\t\t\t\t\tidentify secure client using this TLS key "
     "file\n"
     "      --password=\"\"\t\t\t\tpassword for authentication (if this option "
     "is used, --user option shouldn't include password)\n"
     "      --user=\"\"\t\t\t\t\tusername[:password] for authentication "
     "(prompt if password is not supplied)\n"
     "  -w, --write-out=\"simple\"\t\t\tset the output format (fields, json, "
     "protobuf, simple, table)\n"
     "\n"},
    {"endpoint health", 0,
     "NAME:\n"
     "\tendpoint health - Checks the healthiness of endpoints specified in "
     "`--endpoints` flag\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl endpoint health [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for health\n"
     "\n"
     "GLOBAL OPTIONS:\n"
     "      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure "
     "servers using this CA bundle\n"
     "      --cert=\"\"\t\t\t\t\tidentify secure client using this TLS "
     "certificate file\n"
     "      --cluster[=false]\t\t\t\tuse all endpoints from the cluster member "
     "list\n"
     "      --command-timeout=5s\t\t\ttimeout for short running command "
     "(excluding dial timeout)\n"
     "      --debug[=false]\t\t\t\tenable client-side debug logging\n"
     "      --dial-timeout=2s\t\t\t\tdial timeout for client connections\n"
     "  -d, --discovery-srv=\"\"\t\t\tdomain name to query for SRV records "
     "describing cluster endpoints\n"
     "      --discovery-srv-name=\"\"\t\t\tservice name to query when using "
     "DNS discovery\n"
     "      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"
     "      --hex[=false]\t\t\t\tprint byte strings as hex encoded strings\n"
     "      --insecure-discovery[=true]\t\taccept insecure SRV records "
     "describing cluster endpoints\n"
     "      --insecure-skip-tls-verify[=false]\tskip server certificate "
     "verification (CAUTION: this option should be enabled only for testing "
     "purposes)\n"
     "      --insecure-transport[=true]\t\tdisable transport security for "
     "client connections\n"
     "      --keepalive-time=2s\t\t\tkeepalive time for client connections\n"
     "      --keepalive-timeout=6s\t\t\tkeepalive timeout for client "
     "connections\n"
     "      --key=\"\"\t\t\t\t\tidentify secure client using this TLS key "
     "file\n"
     "      --password=\"\"\t\t\t\tpassword for authentication (if this option "
     "is used, --user option shouldn't include password)\n"
     "      --user=\"\"\t\t\t\t\tusername[:password] for authentication "
     "(prompt if password is not supplied)\n"
     "  -w, --write-out=\"simple\"\t\t\tset the output format (fields, json, "
     "protobuf, simple, table)\n"
     "\n"},
    {"endpoint status", 0,
     "NAME:\n"
     "\tendpoint status - Prints out the status of endpoints specified in "
     "`--endpoints` flag\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl endpoint status [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tWhen --write-out is set to simple, this command prints out "
     "comma-separated status lists for each endpoint.\n"
     "\tThe items in the lists are endpoint, ID, version, db size, is leader, "
     "is learner, raft term, raft index, raft applied index, errors.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for status\n"
     "\n"
     "GLOBAL OPTIONS:\n"
     "      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure "
     "servers using this CA bundle\n"
     "      --cert=\"\"\t\t\t\t\tidentify secure client using this TLS "
     "certificate file\n"
     "      --cluster[=false]\t\t\t\tuse all endpoints from the cluster member "
     "list\n"
     "      --command-timeout=5s\t\t\ttimeout for short running command "
     "(excluding dial timeout)\n"
     "      --debug[=false]\t\t\t\tenable client-side debug logging\n"
     "      --dial-timeout=2s\t\t\t\tdial timeout for client connections\n"
     "  -d, --discovery-srv=\"\"\t\t\tdomain name to query for SRV records "
     "describing cluster endpoints\n"
     "      --discovery-srv-name=\"\"\t\t\tservice name to query when using "
     "DNS discovery\n"
     "      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"
     "      --hex[=false]\t\t\t\tprint byte strings as hex encoded strings\n"
     "      --insecure-discovery[=true]\t\taccept insecure SRV records "
     "describing cluster endpoints\n"
     "      --insecure-skip-tls-verify[=false]\tskip server certificate "
     "verification (CAUTION: this option should be enabled only for testing "
     "purposes)\n"
     "      --insecure-transport[=true]\t\tdisable transport security for "
     "client connections\n"
     "      --keepalive-time=2s\t\t\tkeepalive time for client connections\n"
     "      --keepalive-timeout=6s\t\t\tkeepalive timeout for client "
     "connections\n"
     "      --key=\"\"\t\t\t\t\tidentify secure client using this TLS key "
     "file\n"
     "      --password=\"\"\t\t\t\tpassword for authentication (if this option "
     "is used, --user option shouldn't include password)\n"
     "      --user=\"\"\t\t\t\t\tusername[:password] for authentication "
     "(prompt if password is not supplied)\n"
     "  -w, --write-out=\"simple\"\t\t\tset the output format (fields, json, "
     "protobuf, simple, table)\n"
     "\n"},
    {"get", 1,
     "NAME:\n"
     "\tget - Gets the key or a range of keys\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl get [options] <key> [range_end] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --consistency=\"l\"\t\t\tLinearizable(l) or Serializable(s)\n"
     "      --from-key[=false]\t\tGet keys that are greater than or equal to "
     "the given key using byte compare\n"
     "  -h, --help[=false]\t\t\thelp for get\n"
     "      --keys-only[=false]\t\tGet only the keys\n"
     "      --limit=0\t\t\t\tMaximum number of results\n"
     "      --order=\"\"\t\t\tOrder of results; ASCEND or DESCEND (ASCEND by "
     "default)\n"
     "      --prefix[=false]\t\t\tGet keys with matching prefix\n"
     "      --print-value-only[=false]\tOnly write values when using the "
     "\"simple\" output format\n"
     "      --rev=0\t\t\t\tSpecify the kv revision\n"
     "      --sort-by=\"\"\t\t\tSort target; CREATE, KEY, MODIFY, VALUE, or "
     "VERSION\n"
     "\n"},
    {"help", 1,
     "NAME:\n"
     "\thelp - Help about any command\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl help [command] [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tHelp provides help for any command in the application.\n"
     "\tSimply type etcdctl help [path to command] for full details.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for help\n"
     "\n"},
    {"lease grant", 1,
     "NAME:\n"
     "\tlease grant - Creates leases\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease grant <ttl> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for grant\n"
     "\n"},
    {"lease keep-alive", 1,
     "NAME:\n"
     "\tlease keep-alive - Keeps leases alive (renew)\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease keep-alive [options] <leaseID> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for keep-alive\n"
     "      --once[=false]\tResets the keep-alive time to its original value "
     "and exits immediately\n"
     "\n"},
    {"lease list", 1,
     "NAME:\n"
     "\tlease list - List all active leases\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease list [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for list\n"
     "\n"},
    {"lease revoke", 1,
     "NAME:\n"
     "\tlease revoke - Revokes leases\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease revoke <leaseID> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for revoke\n"
     "\n"},
    {"lease timetolive", 1,
     "NAME:\n"
     "\tlease timetolive - Get lease information\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lease timetolive <leaseID> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for timetolive\n"
     "      --keys[=false]\tGet keys attached to this lease\n"
     "\n"},
    {"lock", 1,
     "NAME:\n"
     "\tlock - Acquires a named lock\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl lock <lockname> [exec-command arg1 arg2 ...] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for lock\n"
     "      --ttl=10\t\ttimeout for session\n"
     "\n"},
    {"make-mirror", 1,
     "NAME:\n"
     "\tmake-mirror - Makes a mirror at the destination etcd cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl make-mirror [options] <destination> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --dest-cacert=\"\"\t\t\tVerify certificates of TLS enabled secure "
     "servers using this CA bundle\n"
     "      --dest-cert=\"\"\t\t\tIdentify secure client using this TLS "
     "certificate file for the destination cluster\n"
     "      --dest-insecure-transport[=true]\tDisable transport security for "
     "client connections\n"
     "      --dest-key=\"\"\t\t\tIdentify secure client using this TLS key "
     "file\n"
     "      --dest-prefix=\"\"\t\t\tdestination prefix to mirror a prefix to a "
     "different prefix in the destination cluster\n"
     "  -h, --help[=false]\t\t\thelp for make-mirror\n"
     "      --no-dest-prefix[=false]\t\tmirror key-values to the root of the "
     "destination cluster\n"
     "      --prefix=\"\"\t\t\tKey-value prefix to mirror\n"
     "\n"},
    {"member add", 1,
     "NAME:\n"
     "\tmember add - Adds a member into the cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member add <memberName> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for add\n"
     "      --learner[=false]\tindicates if the new member is raft learner\n"
     "      --peer-urls=\"\"\tcomma separated peer URLs for the new member.\n"
     "\n"},
    {"member list", 1,
     "NAME:\n"
     "\tmember list - Lists all members in the cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member list [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tWhen --write-out is set to simple, this command prints out "
     "comma-separated member lists for each endpoint.\n"
     "\tThe items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, "
     "Is Learner.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for list\n"
     "\n"},
    {"member promote", 1,
     "NAME:\n"
     "\tmember promote - Promotes a non-voting member in the cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member promote <memberID> [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tPromotes a non-voting learner member to a voting one in the cluster.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for promote\n"
     "\n"},
    {"member remove", 1,
     "NAME:\n"
     "\tmember remove - Removes a member from the cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member remove <memberID> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for remove\n"
     "\n"},
    {"member update", 1,
     "NAME:\n"
     "\tmember update - Updates a member in the cluster\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl member update <memberID> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for update\n"
     "      --peer-urls=\"\"\tcomma separated peer URLs for the updated "
     "member.\n"
     "\n"},
    {"migrate", 1,
     "NAME:\n"
     "\tmigrate - Migrates keys in a v2 store to a mvcc store\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl migrate [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --data-dir=\"\"\tPath to the data directory\n"
     "  -h, --help[=false]\thelp for migrate\n"
     "      --no-ttl[=false]\tDo not convert TTL keys\n"
     "      --transformer=\"\"\tPath to the user-provided transformer program\n"
     "      --wal-dir=\"\"\tPath to the WAL directory\n"
     "\n"},
    {"move-leader", 1,
     "NAME:\n"
     "\tmove-leader - Transfers leadership to another etcd cluster member.\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl move-leader <transferee-member-id> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for move-leader\n"
     "\n"},
    {"put", 1,
     "NAME:\n"
     "\tput - Puts the given key into the store\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl put [options] <key> <value> (<value> can also be given from "
     "stdin) [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tPuts the given key into the store.\n"
     "\t\n"
     "\tWhen <value> begins with '-', <value> is interpreted as a flag.\n"
     "\tInsert '--' for workaround:\n"
     "\t\n"
     "\t$ put <key> -- <value>\n"
     "\t$ put -- <key> <value>\n"
     "\t\n"
     "\tIf <value> isn't given as a command line argument and '--ignore-value' "
     "is not specified,\n"
     "\tthis command tries to read the value from standard input.\n"
     "\t\n"
     "\tIf <lease> isn't given as a command line argument and '--ignore-lease' "
     "is not specified,\n"
     "\tthis command tries to read the value from standard input.\n"
     "\t\n"
     "\tFor example,\n"
     "\t$ cat file | put <key>\n"
     "\twill store the content of the file to <key>.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for put\n"
     "      --ignore-lease[=false]\tupdates the key using its current lease\n"
     "      --ignore-value[=false]\tupdates the key using its current value\n"
     "      --lease=\"0\"\t\tlease ID (in hexadecimal) to attach to the key\n"
     "      --prev-kv[=false]\t\treturn the previous key-value pair before "
     "modification\n"
     "\n"},
    {"role add", 1,
     "NAME:\n"
     "\trole add - Adds a new role\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role add <role name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for add\n"
     "\n"},
    {"role delete", 1,
     "NAME:\n"
     "\trole delete - Deletes a role\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role delete <role name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for delete\n"
     "\n"},
    {"role get", 1,
     "NAME:\n"
     "\trole get - Gets detailed information of a role\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role get <role name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for get\n"
     "\n"},
    {"role grant-permission", 1,
     "NAME:\n"
     "\trole grant-permission - Grants a key to a role\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role grant-permission [options] <role name> <permission type> "
     "<key> [endkey] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --from-key[=false]\tgrant a permission of keys that are greater "
     "than or equal to the given key using byte compare\n"
     "  -h, --help[=false]\t\thelp for grant-permission\n"
     "      --prefix[=false]\t\tgrant a prefix permission\n"
     "\n"},
    {"role list", 1,
     "NAME:\n"
     "\trole list - Lists all roles\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role list [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for list\n"
     "\n"},
    {"role revoke-permission", 1,
     "NAME:\n"
     "\trole revoke-permission - Revokes a key from a role\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl role revoke-permission <role name> <key> [endkey] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --from-key[=false]\trevoke a permission of keys that are greater "
     "than or equal to the given key using byte compare\n"
     "  -h, --help[=false]\t\thelp for revoke-permission\n"
     "      --prefix[=false]\t\trevoke a prefix permission\n"
     "\n"},
    {"snapshot restore", 1,
     "NAME:\n"
     "\tsnapshot restore - Restores an etcd member snapshot to an etcd "
     "directory\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl snapshot restore <filename> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --data-dir=\"\"\t\t\t\t\t\tPath to the data directory\n"
     "  -h, --help[=false]\t\t\t\t\t\thelp for restore\n"
     "      --initial-advertise-peer-urls=\"http://localhost:2380\"\tList of "
     "this member's peer URLs to advertise to the rest of the cluster\n"
     "      --initial-cluster=\"default=http://localhost:2380\"\t\tInitial "
     "cluster configuration for restore bootstrap\n"
     "      --initial-cluster-token=\"etcd-cluster\"\t\t\tInitial cluster "
     "token for the etcd cluster during restore bootstrap\n"
     "      --name=\"default\"\t\t\t\t\t\tHuman-readable name for this member\n"
     "      --skip-hash-check[=false]\t\t\t\t\tIgnore snapshot integrity hash "
     "value (required if copied from data directory)\n"
     "      --wal-dir=\"\"\t\t\t\t\t\tPath to the WAL directory (use "
     "--data-dir if none given)\n"
     "\n"},
    {"snapshot save", 1,
     "NAME:\n"
     "\tsnapshot save - Stores an etcd node backend snapshot to a given file\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl snapshot save <filename> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for save\n"
     "\n"},
    {"snapshot status", 1,
     "NAME:\n"
     "\tsnapshot status - Gets backend snapshot status of a given file\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl snapshot status <filename> [flags]\n"
     "\n"
     "DESCRIPTION:\n"
     "\tWhen --write-out is set to simple, this command prints out "
     "comma-separated status lists for each endpoint.\n"
     "\tThe items in the lists are hash, revision, total keys, total size.\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for status\n"
     "\n"},
    {"txn", 1,
     "NAME:\n"
     "\ttxn - Txn processes all the requests in one transaction\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl txn [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for txn\n"
     "  -i, --interactive[=false]\tInput transaction in interactive mode\n"
     "\n"},
    {"user add", 1,
     "NAME:\n"
     "\tuser add - Adds a new user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user add <user name or user:password> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for add\n"
     "      --interactive[=true]\tRead password from stdin instead of "
     "interactive terminal\n"
     "      --new-user-password=\"\"\tSupply password from the command line "
     "flag\n"
     "      --no-password[=false]\tCreate a user without password (CN based "
     "auth only)\n"
     "\n"},
    {"user delete", 1,
     "NAME:\n"
     "\tuser delete - Deletes a user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user delete <user name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for delete\n"
     "\n"},
    {"user get", 1,
     "NAME:\n"
     "\tuser get - Gets detailed information of a user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user get <user name> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "      --detail[=false]\tShow permissions of roles granted to the user\n"
     "  -h, --help[=false]\thelp for get\n"
     "\n"},
    {"user grant-role", 1,
     "NAME:\n"
     "\tuser grant-role - Grants a role to a user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user grant-role <user name> <role name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for grant-role\n"
     "\n"},
    {"user list", 1,
     "NAME:\n"
     "\tuser list - Lists all users\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user list [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for list\n"
     "\n"},
    {"user passwd", 1,
     "NAME:\n"
     "\tuser passwd - Changes password of user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user passwd <user name> [options] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for passwd\n"
     "      --interactive[=true]\tIf true, read password from stdin instead of "
     "interactive terminal\n"
     "\n"},
    {"user revoke-role", 1,
     "NAME:\n"
     "\tuser revoke-role - Revokes a role from a user\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl user revoke-role <user name> <role name> [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for revoke-role\n"
     "\n"},
    {"version", 1,
     "NAME:\n"
     "\tversion - Prints the version of etcdctl\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl version [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\thelp for version\n"
     "\n"},
    {"watch", 1,
     "NAME:\n"
     "\twatch - Watches events stream on keys or prefixes\n"
     "\n"
     "USAGE:\n"
     "\tetcdctl watch [options] [key or prefix] [range_end] [--] [exec-command "
     "arg1 arg2 ...] [flags]\n"
     "\n"
     "OPTIONS:\n"
     "  -h, --help[=false]\t\thelp for watch\n"
     "  -i, --interactive[=false]\tInteractive mode\n"
     "      --prefix[=false]\t\tWatch on a prefix if prefix is set\n"
     "      --prev-kv[=false]\t\tget the previous key-value pair before the "
     "event happens\n"
     "      --rev=0\t\t\tRevision to start watching\n"
     "\n"},
    {NULL, 0, NULL}};

const char *ctl_help_text(const char *name, bool *with_global)
{
    if (strcmp(name, "etcdctl") == 0) {
        *with_global = false;
        return ctl_help_root;
    }
    for (const struct ctl_help *h = ctl_helps; h->name; h++)
        if (strcmp(h->name, name) == 0) {
            *with_global = h->with_global != 0;
            return h->text;
        }
    return NULL;
}

/* The version command is the framework's own. */
static int cmd_version(struct ctl *ctl, int argc, char **argv)
{
    int n = 0;
    static const struct ctl_flag flags[] = {{0}};
    int rc = ctl_parse_flags(ctl, argc, argv, flags, &n);
    if (rc >= 0)
        return rc;
    fputs("etcdctl version: 3.4.23\nAPI version: 3.4\n", ctl->out);
    return CTL_EXIT_SUCCESS;
}

static const struct ctl_command ctl_builtin_commands[] = {
    {"version", cmd_version, "version"}, {0}};

static const struct ctl_command *const *all_tables(void)
{
    static const struct ctl_command *const t[] = {
        ctl_builtin_commands,  ctl_kv_commands,
        ctl_lease_commands,    ctl_cluster_commands,
        ctl_lock_commands,     ctl_check_commands,
        ctl_snapshot_commands, NULL};
    return t;
}

static const struct ctl_command *find_impl(const char *name)
{
    for (const struct ctl_command *const *t = all_tables(); *t; t++)
        for (const struct ctl_command *c = *t; c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

/* Names known to etcdctl's command tree: top level (@parent NULL) or the
 * subcommands of @parent. Returns the count, names in *out (sorted). */
static size_t child_names(const char *parent, const char **out, size_t max)
{
    size_t n = 0;
    size_t pl = parent ? strlen(parent) : 0;
    if (!parent && n < max)
        out[n++] = "help";
    for (const struct ctl_help *h = ctl_helps; h->name; h++) {
        const char *sp = strchr(h->name, ' ');
        if (!parent) {
            if (sp)
                continue;
        } else {
            if (!sp || (size_t)(sp - h->name) != pl ||
                strncmp(h->name, parent, pl) != 0)
                continue;
        }
        if (n < max)
            out[n++] = parent ? sp + 1 : h->name;
    }
    return n;
}

/* cobra's findNext: exact name, else the only name with @word as prefix. */
static const char *match_name(const char **names, size_t n, const char *word)
{
    const char *m = NULL;
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], word) == 0)
            return names[i];
        if (strncmp(names[i], word, strlen(word)) == 0)
            m = names[i], nm++;
    }
    return nm == 1 ? m : NULL;
}

static bool is_group(const char *name)
{
    const char *names[64];
    return child_names(name, names, 64) > 0;
}

static size_t levenshtein_ci(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *d = calloc((la + 1) * (lb + 1), sizeof(size_t));
    for (size_t i = 0; i <= la; i++)
        d[i * (lb + 1)] = i;
    for (size_t j = 0; j <= lb; j++)
        d[j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[(i - 1) * (lb + 1) + j] + 1;
            size_t x = d[i * (lb + 1) + j - 1] + 1;
            if (x < best)
                best = x;
            x = d[(i - 1) * (lb + 1) + j - 1] + (ca == cb ? 0 : 1);
            if (x < best)
                best = x;
            d[i * (lb + 1) + j] = best;
        }
    size_t r = d[la * (lb + 1) + lb];
    free(d);
    return r;
}

static int unknown_command(struct ctl *ctl, const char *word)
{
    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    /* cobra lists commands sorted by name */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    char *q = ctl_go_quote((const uint8_t *)word, strlen(word));
    char msg[4096];
    int off =
        snprintf(msg, sizeof(msg), "unknown command %s for \"etcdctl\"", q);
    free(q);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        size_t wl = strlen(word);
        bool pfx = true;
        for (size_t k = 0; k < wl; k++)
            if (tolower((unsigned char)names[i][k]) !=
                tolower((unsigned char)word[k])) {
                pfx = false;
                break;
            }
        if (levenshtein_ci(word, names[i]) <= 2 || pfx) {
            if (!any)
                off += snprintf(msg + off, sizeof(msg) - (size_t)off,
                                "\n\nDid you mean this?\n");
            any = true;
            off += snprintf(msg + off, sizeof(msg) - (size_t)off, "\t%s\n",
                            names[i]);
        }
    }
    fprintf(ctl->err, "Error: %s\nRun 'etcdctl --help' for usage.\n", msg);
    fprintf(ctl->err, "Error: %s\n", msg);
    return CTL_EXIT_ERROR;
}

static bool global_takes_value(const char *s)
{
    /* cobra's stripFlags: does "--name" / "-x" (no '=') eat the next arg? */
    static const char *const bools[] = {"debug",
                                        "hex",
                                        "insecure-discovery",
                                        "insecure-skip-tls-verify",
                                        "insecure-transport",
                                        "help",
                                        NULL};
    if (s[1] == '-') {
        for (size_t i = 0; bools[i]; i++)
            if (strcmp(s + 2, bools[i]) == 0)
                return false;
        return true;
    }
    return s[1] != 'h';
}

static void print_root_help(struct ctl *ctl, bool with_help_flag)
{
    if (with_help_flag) {
        fputs(ctl_help_root, ctl->out);
        return;
    }
    const char *h = strstr(ctl_help_root, "  -h, --help[=false]");
    const char *e = h ? strchr(h, '\n') : NULL;
    if (!h || !e) {
        fputs(ctl_help_root, ctl->out);
        return;
    }
    fwrite(ctl_help_root, 1, (size_t)(h - ctl_help_root), ctl->out);
    fputs(e + 1, ctl->out);
}

static int run_help(struct ctl *ctl, char **words, int nwords)
{
    /* "help [command]" */
    if (nwords == 0) {
        print_root_help(ctl, true);
        return 0;
    }
    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    const char *top = match_name(names, n, words[0]);
    char full[256];
    if (top == NULL) {
        fprintf(ctl->out, "Unknown help topic [`%s`]\n", words[0]);
        print_root_help(ctl, false);
        return 0;
    }
    snprintf(full, sizeof(full), "%s", top);
    if (nwords > 1 && is_group(top)) {
        n = child_names(top, names, 128);
        const char *sub = match_name(names, n, words[1]);
        if (sub)
            snprintf(full, sizeof(full), "%s %s", top, sub);
    }
    struct ctl_command tmp = {full, NULL, full};
    ctl->cmd = find_impl(full);
    if (ctl->cmd == NULL)
        ctl->cmd = &tmp;
    ctl_print_usage(ctl);
    ctl->cmd = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    static struct ctl ctl;
    ctl_global_defaults(&ctl.g);
    ctl.out = stdout;
    ctl.err = stderr;

    /* cobra's Find: the command words, skipping flags (and the values
     * of the flags that take one). */
    int nargs = argc - 1;
    char **args = argv + 1;
    int *word_idx = calloc((size_t)argc + 1, sizeof(int));
    int nw = 0;
    for (int i = 0; i < nargs; i++) {
        const char *s = args[i];
        if (strcmp(s, "--") == 0)
            break;
        if (s[0] == '-' && s[1] != '\0') {
            if (strchr(s, '=') == NULL &&
                ((s[1] == '-' && global_takes_value(s)) ||
                 (s[1] != '-' && strlen(s) == 2 && global_takes_value(s)))) {
                if (nargs - i <= 2) /* cobra stops here */
                    break;
                i++;
            }
            continue;
        }
        if (s[0] != '\0')
            word_idx[nw++] = i;
    }

    const char *names[128];
    size_t n = child_names(NULL, names, 128);
    char full[256];
    int used = 0;
    const struct ctl_command *cmd = NULL;
    const char *top = NULL;
    if (nw > 0) {
        top = match_name(names, n, args[word_idx[0]]);
        if (top == NULL) {
            int rc = unknown_command(&ctl, args[word_idx[0]]);
            free(word_idx);
            return rc;
        }
        used = 1;
        snprintf(full, sizeof(full), "%s", top);
        if (is_group(top) && nw > 1) {
            const char *sub_names[64];
            size_t ns = child_names(top, sub_names, 64);
            const char *sub = match_name(sub_names, ns, args[word_idx[1]]);
            if (sub) {
                snprintf(full, sizeof(full), "%s %s", top, sub);
                used = 2;
            }
        }
    }
    /* the arguments without the command words */
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0;
    for (int i = 0; i < nargs; i++) {
        bool skip = false;
        for (int k = 0; k < used; k++)
            if (word_idx[k] == i)
                skip = true;
        if (!skip)
            rest[nrest++] = args[i];
    }
    free(word_idx);

    int rc;
    if (nw == 0) {
        /* the root command: flags, then its help */
        struct ctl_command root = {"etcdctl", NULL, "etcdctl"};
        ctl.cmd = &root;
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0) {
            print_root_help(&ctl, true);
            rc = 0;
        }
    } else if (strcmp(full, "help") == 0) {
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        struct ctl_command hc = {"help", NULL, "help"};
        ctl.cmd = &hc;
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0)
            rc = run_help(&ctl, rest, np);
    } else if ((cmd = find_impl(full)) != NULL) {
        ctl.cmd = cmd;
        ctl.cmd_name = cmd->name;
        rc = cmd->run(&ctl, nrest, rest);
    } else if (is_group(full)) {
        struct ctl_command gc = {full, NULL, full};
        ctl.cmd = &gc;
        int np = 0;
        static const struct ctl_flag none[] = {{0}};
        rc = ctl_parse_flags(&ctl, nrest, rest, none, &np);
        if (rc < 0) {
            ctl_print_usage(&ctl);
            rc = 0;
        }
    } else {
        rc = ctl_fail(&ctl, CTL_EXIT_ERROR,
                      "command \"%s\" is not supported by ikadactl", full);
    }
    if (ctl.cli)
        ikclient_free(ctl.cli);
    fflush(stdout);
    free(rest);
    return rc;
}
