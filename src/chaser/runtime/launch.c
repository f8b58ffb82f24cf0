/*
 * The sandbox launcher: the one host process between the server and bubblewrap.
 *
 *     launch UID PROCS_FILE... -- PROGRAM ARG...
 *
 * Run as root by the server (never by anyone else: it is not setuid), it
 *   1. joins the sandbox's cgroups: writes its own pid into each PROCS_FILE (a
 *      `cgroup.procs` the server made ahead); one it cannot join ends the launch, so a
 *      sandbox never starts outside its limits;
 *   2. sets the open-file soft limit back to the usual 1024 (the server raised its own
 *      for thousands of sandboxes; programs that close every fd up to it would crawl);
 *   3. becomes UID (and its group) for good: no supplementary groups, an empty
 *      capability bounding set, no inheritable or ambient capabilities;
 *   4. execs PROGRAM (bubblewrap) with the environment it was given.
 *
 * It replaces `sh -c 'echo $$ > ...' && exec setpriv ... bwrap`: two dynamically linked
 * programs started per sandbox (about 3 ms). Its argv holds only values the server
 * chose (uid, paths under the cgroup mounts, bwrap's path and the number of an fd);
 * request data never reaches it (it travels in bwrap's option file).
 *
 * Any failure exits 126 with one line on stderr, before PROGRAM runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define SANDBOX_FILES 1024 /* the open-file soft limit sandboxes start with */

extern char **environ;

static void die(const char *what, const char *detail)
{
	dprintf(2, "chaser launch: %s%s%s%s%s\n", what, detail ? " " : "", detail ? detail : "",
		errno ? ": " : "", errno ? strerror(errno) : "");
	_exit(126);
}

static long number(const char *text, long lo, long hi, const char *what)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || !*text || *end || v < lo || v > hi) {
		errno = 0;
		die("bad", what);
	}
	return v;
}

static void join(const char *procs)
{
	const char *name = strrchr(procs, '/');
	struct statfs fs;
	char pid[24];
	int fd, n;
	ssize_t k;
	/* Only a cgroup's own `cgroup.procs` on a cgroup filesystem: this runs as root, and
	 * a mistaken path must never become a write into an ordinary file. */
	if (!name || strcmp(name, "/cgroup.procs")) {
		errno = 0;
		die("not a cgroup.procs file:", procs);
	}
	fd = open(procs, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		die("cannot join the cgroup", procs);
	if (fstatfs(fd, &fs) < 0 || (fs.f_type != CGROUP_SUPER_MAGIC &&
				     fs.f_type != CGROUP2_SUPER_MAGIC)) {
		errno = 0;
		die("not on a cgroup filesystem:", procs);
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	k = write(fd, pid, (size_t)n);
	if (k != n)
		die("cannot join the cgroup", procs);
	close(fd);
}

static void drop_privileges(uid_t uid)
{
	struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct none[2];
	int cap;
	if (setgroups(0, NULL) < 0)
		die("setgroups", NULL);
	if (setresgid(uid, uid, uid) < 0)
		die("setresgid", NULL);
	/* The bounding set goes while we still hold CAP_SETPCAP: nothing run later can
	 * gain a capability back (a file capability, a setuid-root binary). */
	for (cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			die("cannot drop the capability bounding set", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		die("cannot clear ambient capabilities", NULL);
	if (setresuid(uid, uid, uid) < 0)
		die("setresuid", NULL);
	memset(none, 0, sizeof none); /* permitted and effective went with the uid; inheritable too */
	if (syscall(SYS_capset, &head, none) < 0)
		die("capset", NULL);
	errno = 0;
	if (getuid() != uid || geteuid() != uid || getgid() != uid || getegid() != uid ||
	    setuid(0) == 0 || setgid(0) == 0)
		die("the uid change did not hold", NULL);
}

int main(int argc, char **argv)
{
	struct rlimit files;
	uid_t uid;
	int i, sep;
	if (argc < 4)
		die("usage: launch UID PROCS_FILE... -- PROGRAM ARG...", NULL);
	if (getuid() != 0 || geteuid() != 0)
		die("must be started by root (the server)", NULL);
	uid = (uid_t)number(argv[1], 1, 0x7fffffff, "uid");
	for (sep = 2; sep < argc && strcmp(argv[sep], "--"); sep++)
		;
	if (sep + 1 >= argc) {
		errno = 0;
		die("no program after --", NULL);
	}
	for (i = 2; i < sep; i++)
		join(argv[i]);
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur > SANDBOX_FILES) {
		files.rlim_cur = SANDBOX_FILES;
		if (setrlimit(RLIMIT_NOFILE, &files) < 0)
			die("setrlimit", NULL);
	}
	drop_privileges(uid);
	execve(argv[sep + 1], argv + sep + 1, environ);
	die("cannot run", argv[sep + 1]);
	return 126;
}
