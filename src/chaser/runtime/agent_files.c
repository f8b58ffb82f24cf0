/*
 * `agent files OP ...`: the file operations of the files API, run as a command inside a
 * session's sandbox (its namespaces, its unprivileged uid, its limits), so every path
 * is resolved in the sandbox's own view and nothing of the host is reachable that the
 * sandbox's commands could not reach themselves. Included by agent.c: being part of
 * the static agent, it needs nothing of the image (busybox and distroless work).
 *
 * The server starts one of these per request with pipes it owns; bytes stream through
 * the pipes, never through the agent's channel.
 *   read PATH START END    stdout: "size start length\n" then the bytes (START < 0:
 *                          the last -START bytes; END < 0: to the end)
 *   write PATH MODE SIZE   stdin: the bytes. Written to a temporary name in the same
 *                          directory and renamed over PATH only at the end of stdin, so
 *                          a cut-off upload (the server sends SIGTERM, never EOF) leaves
 *                          nothing under PATH. MODE "-": the old file's, else 0644.
 *                          SIZE > 0 is reserved first (no space: fails at once).
 *                          stdout: "size\n"
 *   list PATH              stdout: per entry "T SIZE MODE MTIME\0NAME\0TARGET\0"
 *                          (T: f d l o; a non-directory PATH lists itself)
 *   mkdir PATH MODE        parents made as needed; an existing directory is fine
 *   delete PATH RECURSIVE  never follows a symlink (it removes the link)
 *   pack PATH              stdout: a tar of PATH (named by its last component)
 *   unpack PATH            stdin: a tar, extracted below the directory PATH (made when
 *                          missing). Absolute names, `..`, links that leave PATH, and
 *                          device nodes or fifos are refused; no member is ever written
 *                          through a symlink. Each file is written to a temporary name
 *                          beside its own (`.chaser-tmp-XXXXXX`) and renamed over it once
 *                          complete: a failure or a signal leaves the members completed
 *                          before it, never a partial one. stdout: "files bytes\n"
 * Errors: "chaser-files: CODE: message" on stderr and exit 1, CODE one of not_found,
 * is_directory, not_directory, not_regular, permission_denied, no_space, not_empty,
 * invalid_path, bad_archive, io_error.
 */

#include <sys/sendfile.h>
#include <sys/statvfs.h>

#define FILES_BUF (256 * 1024)
#define TAR_BLOCK 512
#define TAR_MAX (1LL << 62) /* the largest member size or number taken from a header */

/* The temporary file being written (an upload, or an archive's member), removed on any
 * failure and on the signals that end the operation. Only ever changed with those
 * signals blocked, so the handler sees it whole or not at all. */
static char files_tmp[PATH_MAX + 64];
static int files_tmp_dir = -1;

static void tmp_remove(void)
{
	if (files_tmp[0] && files_tmp_dir >= 0)
		unlinkat(files_tmp_dir, files_tmp, 0);
}

static void files_die(const char *code, const char *what, int err)
{
	char line[PATH_MAX + 256];
	snprintf(line, sizeof line, "chaser-files: %s: %s%s%s\n", code, what,
		 err ? ": " : "", err ? strerror(err) : "");
	write_str(2, line);
	tmp_remove();
	_exit(1);
}

/* SIGTERM (the server's way to end an operation whose client left), SIGHUP, SIGINT,
 * SIGPIPE: the temporary file goes with the process. Async-signal-safe: unlinkat and
 * _exit only. */
static void on_term(int sig)
{
	(void)sig;
	tmp_remove();
	_exit(1);
}

static const int files_sigs[] = {SIGTERM, SIGHUP, SIGINT, SIGPIPE, SIGQUIT};

static void files_signals(void)
{
	struct sigaction sa;
	size_t i;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigfillset(&sa.sa_mask);
	for (i = 0; i < sizeof files_sigs / sizeof *files_sigs; i++)
		sigaction(files_sigs[i], &sa, NULL);
	/* Past a file size limit write() fails (EFBIG: no_space) instead of killing us
	 * with the temporary file left behind. */
	signal(SIGXFSZ, SIG_IGN);
}

static void block_signals(sigset_t *old)
{
	sigset_t set;
	size_t i;
	sigemptyset(&set);
	for (i = 0; i < sizeof files_sigs / sizeof *files_sigs; i++)
		sigaddset(&set, files_sigs[i]);
	sigprocmask(SIG_BLOCK, &set, old);
}

/* The error code an errno maps to. */
static const char *files_code(int err)
{
	switch (err) {
	case ENOENT: return "not_found";
	case EISDIR: return "is_directory";
	case ENOTDIR: return "not_directory";
	case EACCES: case EPERM: case EROFS: return "permission_denied";
	case ENOSPC: case EDQUOT: case EFBIG: return "no_space";
	case ENOTEMPTY: case EEXIST: return "not_empty";
	case ENAMETOOLONG: case ELOOP: return "invalid_path";
	case ENXIO: case ENODEV: return "not_regular"; /* a socket, a device without a driver */
	default: return "io_error";
	}
}

static void files_fail(const char *what, int err)
{
	files_die(files_code(err), what, err);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			files_fail("write", k < 0 ? errno : EIO);
		p += k;
		n -= (size_t)k;
	}
}

/* Tar output is many small pieces (headers, padding, small files): gathered here and
 * written in large blocks, which the server forwards as large chunks. */
static char *obuf;
static size_t olen;

static void out_flush(void)
{
	write_all(1, obuf, olen);
	olen = 0;
}

static void out_put(const char *p, size_t n)
{
	if (olen + n > FILES_BUF)
		out_flush();
	if (n >= FILES_BUF) {
		write_all(1, p, n);
		return;
	}
	memcpy(obuf + olen, p, n);
	olen += n;
}

/* Up to n bytes from fd; fewer only at its end. */
static size_t read_full(int fd, char *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, p + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			files_fail("read", errno);
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return got;
}

/* Copy exactly `len` bytes of `in` (a file) to `out`: sendfile, else read and write.
 * A file that shrank meanwhile is padded with zeros, so a tar stays well formed. */
/* Copy `len` bytes of the file `in` to `out`. A file that shrank meanwhile is padded
 * with zeros when `pad` (a tar member's size is already promised in its header) and is
 * an error otherwise (a download must end short, never deliver zeros as the file's). */
static void copy_out(int in, int out, long long len, char *buf, int pad)
{
	while (len > 0) {
		size_t want = len > (1 << 30) ? (1 << 30) : (size_t)len;
		ssize_t k = sendfile(out, in, NULL, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EINVAL || errno == ENOSYS)) {
			k = read(in, buf, want < FILES_BUF ? want : FILES_BUF);
			if (k < 0 && errno == EINTR)
				continue;
			if (k > 0)
				write_all(out, buf, (size_t)k);
		}
		if (k < 0)
			files_fail("read", errno);
		if (k == 0) {
			if (!pad)
				files_die("file_changed", "the file shrank while it was read", 0);
			memset(buf, 0, FILES_BUF);
			while (len > 0) {
				size_t z = len < FILES_BUF ? (size_t)len : FILES_BUF;
				write_all(out, buf, z);
				len -= (long long)z;
			}
			return;
		}
		len -= k;
	}
}

/* Copy `len` bytes of `in` (a pipe) to `out` (a file); len < 0: to the end. */
static long long copy_in(int in, int out, long long len, char *buf)
{
	long long total = 0;
	while (len < 0 || total < len) {
		size_t want = FILES_BUF;
		ssize_t k;
		if (len >= 0 && (long long)want > len - total)
			want = (size_t)(len - total);
		k = read(in, buf, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			files_fail("read the upload", errno);
		if (k == 0) {
			if (len >= 0)
				files_die("bad_archive", "the archive ends inside a file", 0);
			break;
		}
		write_all(out, buf, (size_t)k);
		total += k;
	}
	return total;
}

static long long files_num(const char *s)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		files_die("invalid_path", "a bad number", 0);
	return v;
}

/* A path argument copied out of argv (which is never written: the strings are only
 * as long as they are), with room for a trailing '/'. */
static void path_arg(char *out, size_t cap, const char *path)
{
	size_t n = strlen(path);
	if (n == 0 || n + 2 > cap)
		files_die("invalid_path", "empty, or too long", 0);
	memcpy(out, path, n + 1);
}

/* ---- temporary files ------------------------------------------------------------------ */

/* A fresh temporary name, `.chaser-tmp-` and six random characters. */
static void tmp_name(char *out, size_t cap)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	static unsigned long long seed, counter;
	unsigned long long r;
	char x[7];
	int i;
	if (!seed && syscall(SYS_getrandom, &seed, sizeof seed, 1 /* GRND_NONBLOCK */) !=
		     (long)sizeof seed)
		seed = ((unsigned long long)getpid() << 32) ^ (unsigned long long)time(NULL);
	r = seed ^ (++counter * 0x9e3779b97f4a7c15ULL); /* a name per member, one syscall in all */
	r ^= r >> 31;
	for (i = 0; i < 6; i++, r /= 62)
		x[i] = abc[r % 62];
	x[6] = '\0';
	snprintf(out, cap, ".chaser-tmp-%s", x);
}

/* Create the temporary file `name` (NULL: a fresh random one) in `dir`, never through
 * a link and never over anything, and record it for removal on any failure or signal. */
static int tmp_open(int dir, const char *name, const char *what)
{
	sigset_t old;
	int fd = -1, tries, err = 0;
	block_signals(&old);
	for (tries = 0; tries < 100 && fd < 0; tries++) {
		if (name)
			snprintf(files_tmp, sizeof files_tmp, "%s", name);
		else
			tmp_name(files_tmp, sizeof files_tmp);
		fd = openat(dir, files_tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		err = errno;
		if (fd < 0 && (name || err != EEXIST))
			break;
	}
	if (fd < 0) {
		files_tmp[0] = '\0';
		files_fail(what, err);
	}
	files_tmp_dir = dir;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return fd;
}

/* The complete temporary file renamed over `base` in its directory, and forgotten. */
static void tmp_commit(const char *base, const char *what)
{
	sigset_t old;
	block_signals(&old);
	if (renameat(files_tmp_dir, files_tmp, files_tmp_dir, base) < 0)
		files_fail(what, errno); /* removes it */
	files_tmp[0] = '\0';
	files_tmp_dir = -1;
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* ---- read, write, list, mkdir, delete ------------------------------------------------ */

static int files_read(const char *path, long long start, long long end)
{
	char head[96], *buf = xrealloc(NULL, FILES_BUF);
	struct stat st;
	long long size, len;
	int fd;
	/* Looked at before it is opened: opening a device or fifo can block or act */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		files_die(S_ISDIR(st.st_mode) ? "is_directory" : "not_regular", path, 0);
	fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		files_fail(path, errno);
	if (fstat(fd, &st) < 0)
		files_fail(path, errno);
	if (S_ISDIR(st.st_mode))
		files_die("is_directory", path, 0);
	if (!S_ISREG(st.st_mode)) /* swapped meanwhile */
		files_die("not_regular", path, 0);
	fcntl(fd, F_SETFL, 0);
	size = (long long)st.st_size;
	/* Bounded, so that nothing below can overflow (no file is this large) */
	start = start < -TAR_MAX ? -TAR_MAX : start > TAR_MAX ? TAR_MAX : start;
	end = end > TAR_MAX ? TAR_MAX : end;
	if (start < 0)
		start = size + start < 0 ? 0 : size + start;
	if (end < 0 || end >= size)
		end = size - 1;
	len = start >= size ? 0 : end - start + 1;
	if (len < 0)
		len = 0;
	snprintf(head, sizeof head, "%lld %lld %lld\n", size, start, len);
	write_all(1, head, strlen(head));
	if (len > 0 && lseek(fd, start, SEEK_SET) < 0)
		files_fail(path, errno);
	copy_out(fd, 1, len, buf, 0);
	return 0;
}

/* Make the directories of `path` (as mkdir -p); errors name the one that failed. */
static void make_parents(char *path, mode_t mode)
{
	char *p = path;
	while (*p == '/')
		p++;
	for (; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(path, mode) < 0 && errno != EEXIST)
			files_fail(path, errno);
		*p = '/';
		while (p[1] == '/')
			p++;
	}
}

static int files_write(const char *arg, const char *mode_s, long long hint)
{
	char path[PATH_MAX], dir[PATH_MAX], name[NAME_MAX + 1], head[32], *base;
	char *buf = xrealloc(NULL, FILES_BUF);
	struct statvfs vfs;
	struct stat st;
	mode_t mode = 0644;
	long long size;
	int fd, dfd;
	size_t n;
	path_arg(path, sizeof path, arg);
	n = strlen(path);
	if (path[n - 1] == '/')
		files_die("invalid_path", "a file path (not a directory)", 0);
	make_parents(path, 0755);
	memcpy(dir, path, n + 1);
	base = strrchr(dir, '/');
	if (base) {
		*base++ = '\0';
		dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		base = dir;
		dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0)
		files_fail(path, errno);
	if (fstatat(dfd, base, &st, 0) == 0) {
		if (S_ISDIR(st.st_mode))
			files_die("is_directory", path, 0);
		mode = st.st_mode & 07777;
	}
	if (strcmp(mode_s, "-"))
		mode = (mode_t)strtol(mode_s, NULL, 8) & 07777;
	/* Named by the process: the server removes it if this one is killed (SIGKILL) */
	snprintf(name, sizeof name, ".%.200s.chaser-upload-%d", base, (int)getpid());
	fd = tmp_open(dfd, name, path);
	if (hint > 0 && fstatvfs(fd, &vfs) == 0 &&
	    (unsigned long long)hint / vfs.f_frsize >= (unsigned long long)vfs.f_bavail)
		files_die("no_space", path, ENOSPC); /* more than the free space: before a byte */
	/* fallocate(2), not posix_fallocate: glibc's fallback on a filesystem without it
	 * writes a byte per block of the whole length, which is no reservation at all. */
	if (hint > 0 && fallocate(fd, 0, 0, hint) < 0 && (errno == ENOSPC || errno == EDQUOT ||
							  errno == EFBIG))
		files_die("no_space", path, ENOSPC);
	size = copy_in(0, fd, -1, buf);
	if (ftruncate(fd, size) < 0 || fchmod(fd, mode) < 0 || close(fd) < 0)
		files_fail(path, errno);
	tmp_commit(base, path);
	snprintf(head, sizeof head, "%lld\n", size);
	write_all(1, head, strlen(head));
	return 0;
}

/* Append stdin to `path` (made with its parents when missing): the MCP write_file tool's
 * append, which adds to a file in place as `>>` does. Answers the file's new size. */
static int files_append(const char *arg)
{
	char path[PATH_MAX], head[32], *buf = xrealloc(NULL, FILES_BUF);
	struct stat st;
	int fd;
	path_arg(path, sizeof path, arg);
	if (path[strlen(path) - 1] == '/')
		files_die("invalid_path", "a file path (not a directory)", 0);
	make_parents(path, 0755);
	/* O_NONBLOCK: a fifo planted under the name must not hold the open forever. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
	if (fd < 0)
		files_fail(path, errno);
	if (fstat(fd, &st) < 0)
		files_fail(path, errno);
	if (!S_ISREG(st.st_mode))
		files_die("not_regular", path, 0);
	if (fcntl(fd, F_SETFL, O_APPEND) < 0)
		files_fail(path, errno);
	copy_in(0, fd, -1, buf);
	if (fstat(fd, &st) < 0 || close(fd) < 0)
		files_fail(path, errno);
	snprintf(head, sizeof head, "%lld\n", (long long)st.st_size);
	write_all(1, head, strlen(head));
	return 0;
}

static void list_entry(int dirfd, const char *name, const char *shown)
{
	char head[128];
	static char target[PATH_MAX];
	struct stat st;
	char t = 'o';
	ssize_t tl = 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return; /* gone meanwhile */
	if (S_ISREG(st.st_mode))
		t = 'f';
	else if (S_ISDIR(st.st_mode))
		t = 'd';
	else if (S_ISLNK(st.st_mode)) {
		t = 'l';
		tl = readlinkat(dirfd, name, target, sizeof target - 1);
	}
	target[tl > 0 ? tl : 0] = '\0';
	snprintf(head, sizeof head, "%c %lld %o %lld.%09ld", t, (long long)st.st_size,
		 (unsigned)(st.st_mode & 07777), (long long)st.st_mtim.tv_sec,
		 (long)st.st_mtim.tv_nsec);
	write_all(1, head, strlen(head) + 1);
	write_all(1, shown, strlen(shown) + 1);
	write_all(1, target, strlen(target) + 1);
}

/* Entries a listing sends at most: the server's MAX_LIST_ENTRIES and one more, which
 * tells it there were more (a directory of millions costs no more than this). */
#define LIST_MAX 10001

static int files_list(const char *path)
{
	struct dirent *e;
	DIR *d;
	long n = 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		struct stat st;
		if (errno == ENOTDIR && lstat(path, &st) == 0) {
			list_entry(AT_FDCWD, path, ""); /* no entry's name is empty: "the path itself" */
			return 0;
		}
		files_fail(path, errno);
	}
	if (!(d = fdopendir(fd)))
		files_fail(path, errno);
	while (n < LIST_MAX && (errno = 0, e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			list_entry(fd, e->d_name, e->d_name);
			n++;
		}
	if (n < LIST_MAX && errno)
		files_fail(path, errno);
	return 0;
}

static int files_mkdir(const char *arg, const char *mode_s)
{
	mode_t mode = (mode_t)strtol(mode_s, NULL, 8) & 07777;
	struct stat st;
	char path[PATH_MAX];
	path_arg(path, sizeof path, arg);
	make_parents(path, 0755);
	if (mkdir(path, mode) < 0) {
		if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		files_fail(path, errno == EEXIST ? ENOTDIR : errno);
	}
	return 0;
}

/* Remove `name` in `dirfd` and, for a directory, all below it; never through a link. */
static void remove_tree(int dirfd, const char *name, int depth)
{
	struct dirent *e;
	DIR *d;
	int fd;
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return;
	if (errno != EISDIR && errno != EPERM)
		files_fail(name, errno);
	if (depth > 4096)
		files_die("invalid_path", "directories nested too deep", 0);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		files_fail(name, errno);
	if (!(d = fdopendir(fd)))
		files_fail(name, errno);
	while ((errno = 0, e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			remove_tree(fd, e->d_name, depth + 1);
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		files_fail(name, errno);
}

static int files_delete(const char *path, int recursive)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		files_fail(path, errno);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0)
			files_fail(path, errno);
	} else if (!recursive) {
		if (rmdir(path) < 0)
			files_fail(path, errno);
	} else {
		remove_tree(AT_FDCWD, path, 0);
	}
	return 0;
}

/* ---- tar out ------------------------------------------------------------------------ */

static void octal(char *field, size_t width, unsigned long long v)
{
	/* base-256 for what octal cannot hold (files of 8 GiB and more), as GNU tar */
	if (v >= (1ULL << (3 * (width - 1)))) {
		size_t i;
		memset(field, 0, width);
		field[0] = (char)0x80;
		for (i = width - 1; i > 0 && v; i--, v >>= 8)
			field[i] = (char)(v & 0xff);
		return;
	}
	snprintf(field, width, "%0*llo", (int)width - 1, v);
}

static void tar_header(char type, const char *name, const char *link, mode_t mode,
		      unsigned long long size, long long mtime)
{
	char h[TAR_BLOCK];
	unsigned sum = 0;
	size_t i, nl = strlen(name), ll = strlen(link);
	if (nl > 100 || ll > 100) { /* GNU long names: the tar tools all read them */
		const char *longs[2] = {nl > 100 ? name : NULL, ll > 100 ? link : NULL};
		for (i = 0; i < 2; i++)
			if (longs[i]) {
				size_t len = strlen(longs[i]) + 1, pad = (TAR_BLOCK - len % TAR_BLOCK) % TAR_BLOCK;
				char zero[TAR_BLOCK] = {0};
				tar_header(i ? 'K' : 'L', "././@LongLink", "", 0644, len, 0);
				out_put(longs[i], len);
				out_put(zero, pad);
			}
	}
	memset(h, 0, sizeof h);
	memcpy(h, name, nl > 100 ? 100 : nl);
	octal(h + 100, 8, mode & 07777);
	octal(h + 108, 8, 0);
	octal(h + 116, 8, 0);
	octal(h + 124, 12, size);
	octal(h + 136, 12, mtime < 0 ? 0 : (unsigned long long)mtime);
	memset(h + 148, ' ', 8);
	h[156] = type;
	memcpy(h + 157, link, ll > 100 ? 100 : ll);
	memcpy(h + 257, "ustar  ", 8); /* the GNU magic, which goes with its long names */
	for (i = 0; i < TAR_BLOCK; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	out_put(h, TAR_BLOCK);
}

/* A file's bytes into the tar: small ones through the buffer, large ones straight
 * (sendfile) after it; what a shrinking file lacks is zeros. */
static void pack_data(int fd, long long size, char *buf)
{
	if (size >= FILES_BUF / 4) {
		out_flush();
		copy_out(fd, 1, size, buf, 1);
		return;
	}
	while (size > 0) {
		ssize_t k = read(fd, buf, (size_t)size);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			memset(buf, 0, (size_t)size);
			k = (ssize_t)size;
		}
		out_put(buf, (size_t)k);
		size -= k;
	}
}

static void pack_entry(int dirfd, const char *name, char *rel, size_t rlen, char *buf, int depth)
{
	struct stat st;
	static char target[PATH_MAX]; /* not kept across the recursion: a deep tree's stack stays small */
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return; /* gone meanwhile */
	if (S_ISREG(st.st_mode)) {
		int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		char zero[TAR_BLOCK] = {0};
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			if (fd >= 0)
				close(fd);
			return; /* unreadable or swapped meanwhile: left out, as tar warns and goes on */
		}
		tar_header('0', rel, "", st.st_mode, (unsigned long long)st.st_size, st.st_mtim.tv_sec);
		pack_data(fd, (long long)st.st_size, buf);
		out_put(zero, (TAR_BLOCK - (size_t)st.st_size % TAR_BLOCK) % TAR_BLOCK);
		close(fd);
	} else if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(dirfd, name, target, sizeof target - 1);
		if (n < 0)
			return;
		target[n] = '\0';
		tar_header('2', rel, target, 0777, 0, st.st_mtim.tv_sec);
	} else if (S_ISDIR(st.st_mode)) {
		struct dirent *e;
		DIR *d;
		int fd;
		if (rlen + 2 >= PATH_MAX || depth > 4096)
			return;
		rel[rlen] = '/';
		rel[rlen + 1] = '\0';
		tar_header('5', rel, "", st.st_mode, 0, st.st_mtim.tv_sec);
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || !(d = fdopendir(fd))) {
			if (fd >= 0)
				close(fd);
			rel[rlen] = '\0';
			return;
		}
		while ((e = readdir(d)) != NULL) {
			size_t el = strlen(e->d_name);
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || rlen + 1 + el >= PATH_MAX)
				continue;
			memcpy(rel + rlen + 1, e->d_name, el + 1);
			pack_entry(fd, e->d_name, rel, rlen + 1 + el, buf, depth + 1);
		}
		closedir(d);
		rel[rlen] = '\0';
	} /* devices, fifos and sockets are left out: no archive of ours carries them */
}

static int files_pack(const char *path)
{
	char rel[PATH_MAX], zero[2 * TAR_BLOCK] = {0}, *buf = xrealloc(NULL, FILES_BUF);
	char copy[PATH_MAX];
	const char *base;
	size_t n = strlen(path);
	struct stat st;
	if (n >= sizeof copy)
		files_die("invalid_path", "too long", 0);
	memcpy(copy, path, n + 1);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	if (stat(copy, &st) < 0)
		files_fail(path, errno);
	base = strrchr(copy, '/');
	base = base ? base + 1 : copy;
	if (!*base || !strcmp(base, ".")) /* "/" or ".": the directory's contents, as "." */
		base = ".";
	snprintf(rel, sizeof rel, "%s", base);
	obuf = xrealloc(NULL, FILES_BUF);
	/* A link named is packed as the link, as `docker cp` does without -L ("P/." packs
	 * what it points to: the kernel follows the link to reach "."); nothing below is. */
	pack_entry(AT_FDCWD, copy, rel, strlen(rel), buf, 0);
	out_put(zero, sizeof zero);
	out_flush();
	return 0;
}

/* ---- tar in ------------------------------------------------------------------------- */

/* A member's name checked and made relative: no absolute name, no `..`, no empty one. */
static char *member_name(char *name, const char *what)
{
	char *p = name, *c;
	if (*name == '/')
		files_die("bad_archive", "an absolute name in the archive (names must be relative)", 0);
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	for (c = p; *c;) {
		size_t len = strcspn(c, "/");
		if (len == 2 && c[0] == '.' && c[1] == '.')
			files_die("bad_archive", what, 0);
		c += len;
		while (*c == '/')
			c++;
	}
	return p;
}

/* The directory that holds `rel` below `root`, made as needed, opened without ever
 * following a symlink; `*base` is set to the last component. */
static int member_parent(int root, char *rel, char **base, int create)
{
	int fd = dup(root);
	char *c = rel, *slash;
	while ((slash = strchr(c, '/')) != NULL) {
		int next;
		*slash = '\0';
		if (*c && strcmp(c, ".")) {
			if (create && mkdirat(fd, c, 0755) < 0 && errno != EEXIST)
				files_fail(rel, errno);
			next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next < 0)
				files_die(errno == ELOOP || errno == ENOTDIR ? "bad_archive" : files_code(errno),
					  errno == ELOOP || errno == ENOTDIR
					  ? "a member below a symlink or a file of the archive" : rel, 0);
			close(fd);
			fd = next;
		}
		*slash = '/';
		c = slash + 1;
		while (*c == '/')
			c++;
	}
	*base = c;
	return fd;
}

/* Whether a symlink at `rel` pointing at `target` stays below the root. */
static int link_stays(const char *rel, const char *target)
{
	int depth = 0;
	const char *c;
	if (*target == '/' || !*target)
		return 0;
	/* The link's directory depth: its directory components, `.` and empty ones not
	 * counted (`a/./././l` is one level down, as the kernel resolves it). */
	for (c = rel; *c;) {
		size_t len = strcspn(c, "/");
		const char *next = c + len;
		while (*next == '/')
			next++;
		if (*next && len && !(len == 1 && c[0] == '.'))
			depth++;
		c = next;
	}
	for (c = target; *c;) {
		size_t len = strcspn(c, "/");
		if (len == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return 0;
		} else if (len && !(len == 1 && c[0] == '.')) {
			depth++;
		}
		c += len;
		while (*c == '/')
			c++;
	}
	return 1;
}

/* A header's number field: octal (space or NUL ended), or GNU's base-256 (first byte's
 * top bit set). -1 for anything else, a negative number or one over TAR_MAX. */
static long long tar_num(const char *f, size_t width)
{
	unsigned long long v = 0;
	size_t i = 0;
	unsigned char c0 = (unsigned char)f[0];
	if (c0 & 0x80) {
		if (c0 & 0x40)
			return -1; /* negative */
		v = c0 & 0x3f;
		for (i = 1; i < width; i++) {
			if (v > (unsigned long long)TAR_MAX >> 8)
				return -1;
			v = (v << 8) | (unsigned char)f[i];
		}
		return v > (unsigned long long)TAR_MAX ? -1 : (long long)v;
	}
	while (i < width && f[i] == ' ')
		i++;
	for (; i < width && f[i] >= '0' && f[i] <= '7'; i++) /* at most 12 digits: no overflow */
		v = v * 8 + (unsigned)(f[i] - '0');
	if (i < width && f[i] != ' ' && f[i] != '\0')
		return -1;
	return (long long)v;
}

/* The data of a member read whole (long names, pax records), bounded. */
static char *member_text(unsigned long long size)
{
	char *t;
	size_t pad;
	if (size > 1024 * 1024)
		files_die("bad_archive", "a name or header record over 1 MiB", 0);
	pad = (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
	t = xrealloc(NULL, size + pad + 1);
	if (read_full(0, t, size + pad) != size + pad)
		files_die("bad_archive", "the archive ends inside a header", 0);
	t[size] = '\0';
	return t;
}

struct member {
	char name[PATH_MAX + 2], link[PATH_MAX], type;
	int has_name, has_link; /* set by a GNU long name or a pax record: the header's yields */
	long long size;         /* -1: the header's */
	mode_t mode;
	long long mtime;
};

static void take_name(char *out, size_t cap, const char *text)
{
	if (strlen(text) >= PATH_MAX || strlen(text) >= cap)
		files_die("invalid_path", "a name in the archive is too long", 0);
	memcpy(out, text, strlen(text) + 1);
}

/* pax records "LEN key=value\n" (the n bytes of t, NUL ended): path, linkpath and
 * size are taken into `m` (copied: `t` is freed next); a later record wins. */
static void pax(char *t, size_t n, struct member *m)
{
	size_t at = 0;
	while (at < n) {
		char *rec = t + at, *key, *eq;
		size_t len = 0, digits = 0;
		while (at + digits < n && digits < 8 && rec[digits] >= '0' && rec[digits] <= '9')
			len = len * 10 + (size_t)(rec[digits++] - '0');
		if (!digits || at + digits >= n || rec[digits] != ' ' || len <= digits + 1 ||
		    len > n - at || rec[len - 1] != '\n')
			files_die("bad_archive", "a malformed pax header", 0);
		rec[len - 1] = '\0';
		key = rec + digits + 1;
		eq = memchr(key, '=', (size_t)(rec + len - 1 - key));
		if (!eq)
			files_die("bad_archive", "a malformed pax header", 0);
		*eq = '\0';
		if (!strcmp(key, "path")) {
			take_name(m->name, sizeof m->name, eq + 1);
			m->has_name = 1;
		} else if (!strcmp(key, "linkpath")) {
			take_name(m->link, sizeof m->link, eq + 1);
			m->has_link = 1;
		} else if (!strcmp(key, "size")) {
			const char *v = eq + 1;
			long long size = 0;
			if (!*v || strlen(v) > 19)
				files_die("bad_archive", "a pax size that is not a size", 0);
			for (; *v; v++) {
				if (*v < '0' || *v > '9')
					files_die("bad_archive", "a pax size that is not a size", 0);
				size = size * 10 + (*v - '0');
			}
			if (size > TAR_MAX)
				files_die("bad_archive", "a pax size that is not a size", 0);
			m->size = size;
		}
		at += len;
	}
}

static void skip_data(unsigned long long size, char *buf)
{
	unsigned long long left = size + (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
	while (left > 0) {
		size_t n = left > FILES_BUF ? FILES_BUF : (size_t)left;
		if (read_full(0, buf, n) != n)
			files_die("bad_archive", "the archive ends inside a member", 0);
		left -= n;
	}
}

/* A regular member: written to a temporary name beside its own and renamed over it
 * only once complete, so a cut-off or refused archive leaves no partial file. */
static long long unpack_file(int root, char *rel, mode_t mode, long long size, long long mtime,
			     char *buf)
{
	char *base;
	int dir = member_parent(root, rel, &base, 1), fd;
	size_t pad = (TAR_BLOCK - (size_t)(size % TAR_BLOCK)) % TAR_BLOCK;
	struct timespec times[2] = {{0, UTIME_OMIT}, {mtime, 0}};
	if (!*base)
		files_die("bad_archive", "a file member named like a directory", 0);
	fd = tmp_open(dir, NULL, rel);
	copy_in(0, fd, size, buf);
	if (read_full(0, buf, pad) != pad)
		files_die("bad_archive", "the archive ends inside a member", 0);
	futimens(fd, times); /* as tar: a time the filesystem cannot hold is no failure */
	if (fchmod(fd, mode & 0777) < 0 || close(fd) < 0)
		files_fail(rel, errno);
	tmp_commit(base, rel);
	close(dir);
	return size;
}

static void unpack_other(int root, char type, char *rel, const char *link)
{
	char *base, *lbase, lcopy[PATH_MAX], dcopy[PATH_MAX + 2];
	int dir, ldir;
	if (type == '5') {
		size_t n = strlen(rel);
		if (n + 2 > sizeof dcopy)
			files_die("invalid_path", "a name too long", 0);
		memcpy(dcopy, rel, n);
		if (n && rel[n - 1] != '/')
			dcopy[n++] = '/'; /* the directory itself is made as a parent */
		dcopy[n] = '\0';
		close(member_parent(root, dcopy, &base, 1));
		return;
	}
	dir = member_parent(root, rel, &base, 1);
	if (!*base)
		files_die("bad_archive", "a link member named like a directory", 0);
	if (unlinkat(dir, base, 0) < 0 && errno != ENOENT)
		files_fail(rel, errno);
	if (type == '2') {
		if (!link_stays(rel, link))
			files_die("bad_archive", "a symlink that points outside the destination", 0);
		if (symlinkat(link, dir, base) < 0)
			files_fail(rel, errno);
	} else { /* '1', a hard link to an earlier member */
		if (strlen(link) >= sizeof lcopy)
			files_die("invalid_path", "a link target too long", 0);
		memcpy(lcopy, link, strlen(link) + 1);
		ldir = member_parent(root, member_name(lcopy, "a hard link that leaves the destination"),
				     &lbase, 0);
		if (!*lbase)
			files_die("bad_archive", "a hard link to a directory", 0);
		if (linkat(ldir, lbase, dir, base, 0) < 0)
			files_fail(rel, errno);
		close(ldir);
	}
	close(dir);
}

/* A header block: 0 at the end of the archive (two zero blocks, or its end at a
 * header's boundary), else 1 with `h` checked. */
static int header_block(char h[TAR_BLOCK])
{
	unsigned sum = 0, i;
	for (;;) {
		size_t got = read_full(0, h, TAR_BLOCK);
		if (got == 0)
			return 0;
		if (got != TAR_BLOCK)
			files_die("bad_archive", "the archive ends inside a header (not a tar?)", 0);
		for (i = 0; i < TAR_BLOCK && !h[i]; i++)
			;
		if (i < TAR_BLOCK)
			break;
		if (read_full(0, h, TAR_BLOCK) == 0)
			return 0;
		for (i = 0; i < TAR_BLOCK && !h[i]; i++)
			;
		if (i == TAR_BLOCK)
			return 0; /* two zero blocks: the end */
		break;
	}
	for (i = 0; i < TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)h[i];
	if ((long long)sum != tar_num(h + 148, 8))
		files_die("bad_archive", "a header with a bad checksum (not a tar, or "
			  "compressed: upload the uncompressed tar)", 0);
	return 1;
}

/* The next member, its GNU long names and pax records applied; 0 at the end. */
static int next_member(struct member *m)
{
	char h[TAR_BLOCK];
	int extended = 0;
	m->has_name = m->has_link = 0;
	m->size = -1;
	while (header_block(h)) {
		long long size = tar_num(h + 124, 12);
		m->type = h[156];
		if (size < 0)
			files_die("bad_archive", "a member size that is not a size", 0);
		if (m->type == 'L' || m->type == 'K' || m->type == 'x' || m->type == 'g') {
			char *t = member_text((unsigned long long)size);
			if (m->type == 'L') {
				take_name(m->name, sizeof m->name, t);
				m->has_name = 1;
			} else if (m->type == 'K') {
				take_name(m->link, sizeof m->link, t);
				m->has_link = 1;
			} else if (m->type == 'x') {
				pax(t, (size_t)size, m);
			} /* pax globals: nothing of ours */
			free(t);
			extended = 1;
			continue;
		}
		if (!m->has_name) {
			if (h[345] && memcmp(h + 257, "ustar\0", 6) == 0) /* the ustar prefix field */
				snprintf(m->name, sizeof m->name, "%.155s/%.100s", h + 345, h);
			else
				snprintf(m->name, sizeof m->name, "%.100s", h);
		}
		if (!m->has_link)
			snprintf(m->link, sizeof m->link, "%.100s", h + 157);
		if (m->size < 0)
			m->size = size;
		m->mode = (mode_t)(tar_num(h + 100, 8) < 0 ? 0644 : tar_num(h + 100, 8));
		m->mtime = tar_num(h + 136, 12) < 0 ? 0 : tar_num(h + 136, 12);
		return 1;
	}
	if (extended)
		files_die("bad_archive", "the archive ends after an extended header", 0);
	return 0;
}

static int files_unpack(const char *arg)
{
	char head[64], path[PATH_MAX], *buf = xrealloc(NULL, FILES_BUF);
	static struct member m;
	long long files = 0, bytes = 0;
	int root;
	size_t n;
	path_arg(path, sizeof path, arg);
	n = strlen(path);
	if (path[n - 1] != '/')
		memcpy(path + n, "/", 2); /* path_arg left room */
	make_parents(path, 0755);
	if ((root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		files_fail(path, errno);
	while (next_member(&m)) {
		char *rel = member_name(m.name, "a name with '..' in the archive");
		int regular = m.type == '0' || m.type == '\0' || m.type == '7';
		if (!*rel || !strcmp(rel, ".") || !strcmp(rel, "./")) {
			skip_data(regular ? (unsigned long long)m.size : 0, buf);
			continue; /* the destination itself */
		}
		if (regular)
			bytes += unpack_file(root, rel, m.mode, m.size, m.mtime, buf);
		else if (m.type == '5' || m.type == '2' || m.type == '1')
			unpack_other(root, m.type, rel, m.link);
		else if (m.type == '3' || m.type == '4' || m.type == '6')
			files_die("bad_archive", "device nodes and fifos cannot be uploaded", 0);
		else {
			skip_data((unsigned long long)m.size, buf); /* vendor records tar itself skips */
			continue;
		}
		files++;
	}
	snprintf(head, sizeof head, "%lld %lld\n", files, bytes);
	write_all(1, head, strlen(head));
	return 0;
}

static int files_main(int argc, char **argv)
{
	const char *op = argc > 0 ? argv[0] : "";
	/* Not traceable by the sandbox's other processes (they share its uid): what it
	 * answers the server is its own, not a tenant's injection. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	umask(022);
	files_signals();
	if (!strcmp(op, "read") && argc == 4)
		return files_read(argv[1], files_num(argv[2]), files_num(argv[3]));
	if (!strcmp(op, "write") && argc == 4)
		return files_write(argv[1], argv[2], files_num(argv[3]));
	if (!strcmp(op, "append") && argc == 2)
		return files_append(argv[1]);
	if (!strcmp(op, "list") && argc == 2)
		return files_list(argv[1]);
	if (!strcmp(op, "mkdir") && argc == 3)
		return files_mkdir(argv[1], argv[2]);
	if (!strcmp(op, "delete") && argc == 3)
		return files_delete(argv[1], !strcmp(argv[2], "1"));
	if (!strcmp(op, "pack") && argc == 2)
		return files_pack(argv[1]);
	if (!strcmp(op, "unpack") && argc == 2)
		return files_unpack(argv[1]);
	write_str(2, "usage: agent files read|write|append|list|mkdir|delete|pack|unpack ...\n");
	return 2;
}
