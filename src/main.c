/*
 * main.c - the command line: snowd [-t] [-c FILE] | -V | -h.
 *
 * Exit codes: 0 success; 1 bad configuration or plugins (with -t), or a
 * listener that cannot be bound; 2 bad usage.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "pidfile.h"
#include "plugin.h"

#ifndef SNOWD_CONF
#define SNOWD_CONF "/etc/snowd/snowd.ini"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: snowd [-t] [-c FILE]\n"
            "       snowd -V | -h\n"
            "\n"
            "  -c FILE  configuration file (default " SNOWD_CONF ")\n"
            "  -t       test the configuration and its plugins, then exit\n"
            "  -V       print the version and exit\n"
            "  -h       print this help and exit\n"
            "\n"
            "snowd runs in the foreground and logs to stderr: a master\n"
            "process and `workers` worker processes.\n"
            "Signals: HUP reloads, TERM/INT stop gracefully, QUIT stops\n"
            "at once.\n"
            "See snowd(8) and snowd.ini(5).\n");
}

/* -t: the configuration, and the plugins it names, load cleanly. */
static int test_config(const char *file, struct config *cfg)
{
    struct plugin_set plugins = { 0 };
    int bad = plugin_load_dir(&plugins, cfg->plugin_dir) != 0;

    bad |= plugins.failures != 0;
    bad |= plugin_resolve_routes(&plugins, cfg->routes, cfg->nroutes,
                                 cfg->file) != 0;
    fprintf(stderr, "snowd: configuration file %s test %s\n", file,
            bad ? "failed" : "is successful");
    plugin_set_free(&plugins);
    config_free(cfg);
    return bad;
}

int main(int argc, char **argv)
{
    const char *file = SNOWD_CONF;
    int test_only = 0, opt;

    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 't': test_only = 1; break;
        case 'V': printf("snowd %s\n", PACKAGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    log_init();
    signal(SIGPIPE, SIG_IGN);

    struct config *cfg = config_load(file);
    if (!cfg) {
        fprintf(stderr, "snowd: configuration file %s test failed\n", file);
        return 1;
    }
    log_threshold = cfg->log_level;
    log_set_format(cfg->log_format);

    if (test_only)
        return test_config(file, cfg);
    if (pidfile_check(cfg->pid_file) != 0) {
        config_free(cfg);
        return 1;
    }

    /* The master never loads plugins: each worker does, after the fork,
     * so that plugin code never runs in the process that supervises.
     * The master owns cfg and the sockets from here on (a reload replaces
     * them); the pid file stays where it was first written. */
    int status = 1;
    struct master_listeners ls;
    char *pid_file = cfg->pid_file ? strdup(cfg->pid_file) : NULL;
    if (listener_open_all(cfg, NULL, &ls) != 0) {
        config_free(cfg);
    } else {
        log_info("snowd %s started (pid %d)", PACKAGE_VERSION, (int)getpid());
        if (pidfile_write(pid_file) == 0) {
            status = master_run(file, cfg, &ls);
            pidfile_remove(pid_file);
        } else {
            listener_close_all(&ls);
            config_free(cfg);
        }
    }
    free(pid_file);
    return status;
}
