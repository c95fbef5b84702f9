/*
 * pidfile.h - [server] pid_file: the master's process ID, for tools that
 * want it in a file.
 *
 * Only the master calls these; a worker never touches the file.  Every
 * call takes NULL for "no pid_file configured" and then does nothing.
 */
#ifndef SNOWD_PIDFILE_H
#define SNOWD_PIDFILE_H

/* Before binding: refuses to start another daemon over a running one.
 * Returns 0 when path does not exist or names a process that is gone (a
 * stale file, logged, which pidfile_write replaces), or -1 after logging
 * "another snowd (pid N) is running" or why path cannot be read. */
int pidfile_check(const char *path);

/* After binding: writes this process's pid, "PID\n", to path, atomically
 * (a temporary file in the same folder, renamed over path), mode 0644.
 * Returns 0, or -1 after logging what failed. */
int pidfile_write(const char *path);

/* On exit: removes path if it still holds this process's pid, so that a
 * file some other process has written since is left alone. */
void pidfile_remove(const char *path);

#endif
