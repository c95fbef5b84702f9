/*
 * privs.c - dropping root in a worker (see privs.h).
 *
 * Linux resets a process's parent-death signal and its dumpable flag
 * when its uid or gid changes, so the caller sets PR_SET_PDEATHSIG after
 * privs_drop.  The worker is left not dumpable: a process of the same
 * user cannot ptrace it or read its memory (and, later, its TLS keys),
 * at the price of no core dump.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static int fail(const struct config *cfg, const char *call, const char *why)
{
    log_error("cannot switch to user '%s' (uid %u) and group %s%s%s(gid "
              "%u): %s: %s; this worker exits", cfg->user,
              (unsigned)cfg->uid, cfg->group ? "'" : "",
              cfg->group ? cfg->group : "", cfg->group ? "' " : "",
              (unsigned)cfg->gid, call, why);
    return -1;
}

/* The groups in effect are exactly cfg's, in any order. */
static bool groups_match(const struct config *cfg)
{
    int n = getgroups(0, NULL);

    if (n < 0 || (size_t)n != cfg->ngroups)
        return false;
    gid_t *now = calloc((size_t)n + 1, sizeof *now);
    if (!now)
        abort();
    bool ok = getgroups(n, now) == n;
    for (int i = 0; ok && i < n; i++) {
        ok = false;
        for (size_t j = 0; j < cfg->ngroups; j++)
            ok |= now[i] == cfg->groups[j];
    }
    free(now);
    return ok;
}

int privs_drop(const struct config *cfg)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;

    if (!cfg->user || geteuid() != 0)
        return 0;
    if (setgroups(cfg->ngroups, cfg->groups) != 0)
        return fail(cfg, "setgroups", strerror(errno));
    if (setgid(cfg->gid) != 0)
        return fail(cfg, "setgid", strerror(errno));
    if (setuid(cfg->uid) != 0)
        return fail(cfg, "setuid", strerror(errno));

    /* Trust nothing: a call that returned 0 without doing all of it (a
     * seccomp filter that fakes success, say) must not go unnoticed. */
    if (getresgid(&rgid, &egid, &sgid) != 0)
        return fail(cfg, "getresgid", strerror(errno));
    if (rgid != cfg->gid || egid != cfg->gid || sgid != cfg->gid)
        return fail(cfg, "setgid", "did not take");
    if (getresuid(&ruid, &euid, &suid) != 0)
        return fail(cfg, "getresuid", strerror(errno));
    if (ruid != cfg->uid || euid != cfg->uid || suid != cfg->uid)
        return fail(cfg, "setuid", "did not take");
    if (!groups_match(cfg))
        return fail(cfg, "setgroups", "did not take");
    if (cfg->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        return fail(cfg, "setuid(0)", "root could be regained");
    log_debug("running as user '%s' (uid %u), gid %u and %zu group(s)",
              cfg->user, (unsigned)cfg->uid, (unsigned)cfg->gid,
              cfg->ngroups);
    return 0;
}
