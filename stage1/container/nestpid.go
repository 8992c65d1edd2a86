package container

// A pid namespace nested in another one (OCI mode: a container joins its
// sandbox's pid namespace by path, and systemd must still be PID 1 of its own).
//
// The kernel only lets a process make a pid namespace below the one it is
// in (unshare(CLONE_NEWPID) is EINVAL when pid_for_children is not the
// caller's own namespace), so the process that makes it must be in the
// namespace joined. CreateNested therefore starts libcontainer's init from a
// thread whose children go there (setns(CLONE_NEWPID)), with a new pid
// namespace in the config: nsexec's stage-0 and stage-1 run in the namespace
// joined, stage-1 unshares the new one and stage-2, the init, is its PID 1.
// Those processes are still this process's children (CLONE_PARENT), so
// they go to the caller's subreaper as runc's do.
//
// What nsexec reports to libcontainer (its init pipe: one JSON line with the
// stage-1 and stage-2 pids) is then numbered in the namespace joined, and
// libcontainer would use those numbers on the host. The constructor below
// runs in the init process before nsexec does: when it finds itself in
// another pid namespace than its parent's, it puts a relay on the init pipe
// that passes everything through unaltered but that line, whose pids it
// turns into host pids (the children of its parent whose NSpid, at the level
// of the namespace joined, are those numbers).

/*
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// skiff_status reads "Key:" of /proc/PID/status (pid 0: self) into v (at most n
// numbers); it returns how many, or -1.
static int skiff_status(int pid, const char *key, long *v, int n)
{
	char path[64], line[512];
	FILE *f;
	int got = -1;
	size_t kl = strlen(key);

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = line + kl, *end;
		if (strncmp(line, key, kl) != 0)
			continue;
		got = 0;
		while (got < n) {
			long x = strtol(p, &end, 10);
			if (end == p)
				break;
			v[got++] = x;
			p = end;
		}
		break;
	}
	fclose(f);
	return got;
}

// skiff_host_pid finds the child of parent whose NSpid has nr at index level
// and depth entries in all; 0 if there is none.
static long skiff_host_pid(long parent, int level, long nr, int depth)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long found = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		long ppid, ns[34];
		int pid, n;
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = atoi(e->d_name);
		if (skiff_status(pid, "PPid:", &ppid, 1) != 1 || ppid != parent)
			continue;
		n = skiff_status(pid, "NSpid:", ns, 34);
		if (n == depth && level < n && ns[level] == nr) {
			found = ns[0];
			break;
		}
	}
	closedir(d);
	return found;
}

static int skiff_write_all(int fd, const char *b, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

// skiff_translate rewrites nsexec's {"stage1_pid":A,"stage2_pid":B} (numbers
// in the namespace this relay is in, at NSpid index level) into host pids.
static int skiff_translate(const char *in, char *out, size_t outn, long parent, int level)
{
	const char *a = strstr(in, "\"stage1_pid\":"), *b = strstr(in, "\"stage2_pid\":");
	long s1, s2, h1, h2;

	if (!a || !b)
		return -1;
	s1 = strtol(a + 13, NULL, 10);
	s2 = strtol(b + 13, NULL, 10);
	if (s1 <= 0 || s2 <= 0)
		return -1;
	// stage-1 is in this namespace; stage-2, the init, is PID 1 of one below.
	h1 = skiff_host_pid(parent, level, s1, level + 1);
	h2 = skiff_host_pid(parent, level, s2, level + 2);
	if (!h1 || !h2)
		return -1;
	snprintf(out, outn, "{\"stage1_pid\":%ld,\"stage2_pid\":%ld}\n", h1, h2);
	return 0;
}

// skiff_relay copies go -> in and in -> go until both end, translating the
// first line from in.
static void skiff_relay(int go, int in, long parent, int level)
{
	static char buf[65536], line[4096], out[256];
	size_t linelen = 0;
	int line_done = 0, open_go = 1, open_in = 1;

	while (open_go || open_in) {
		struct pollfd p[2] = { { open_go ? go : -1, POLLIN, 0 }, { open_in ? in : -1, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (open_go && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(go, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				open_go = 0;
				shutdown(in, SHUT_WR);
			} else if (skiff_write_all(in, buf, (size_t)n) < 0) {
				return;
			}
		}
		if (open_in && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(in, buf, sizeof(buf));
			char *nl;
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				open_in = 0;
				shutdown(go, SHUT_WR);
				continue;
			}
			if (line_done) {
				if (skiff_write_all(go, buf, (size_t)n) < 0)
					return;
				continue;
			}
			if (linelen + (size_t)n >= sizeof(line))
				return; // not nsexec's line: fail the create
			memcpy(line + linelen, buf, (size_t)n);
			linelen += (size_t)n;
			line[linelen] = 0;
			nl = strchr(line, '\n');
			if (!nl)
				continue;
			*nl = 0;
			if (skiff_translate(line, out, sizeof(out), parent, level) < 0)
				return; // the init gets EOF, libcontainer an error
			line_done = 1;
			if (skiff_write_all(go, out, strlen(out)) < 0)
				return;
			if (skiff_write_all(go, nl + 1, linelen - (size_t)(nl + 1 - line)) < 0)
				return;
		}
	}
}

__attribute__((constructor(101))) static void skiff_nested_pidns(void)
{
	const char *e = getenv("_LIBCONTAINER_INITPIPE"), *t = getenv("_LIBCONTAINER_INITTYPE");
	char path[64];
	struct stat self, parent;
	long ppid, ns[34];
	int go, level, sv[2];
	pid_t r;

	if (!e || !t || strcmp(t, "standard") != 0)
		return; // not libcontainer's init of a container
	if (skiff_status(0, "PPid:", &ppid, 1) != 1 || ppid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%ld/ns/pid", ppid);
	if (stat("/proc/self/ns/pid", &self) < 0 || stat(path, &parent) < 0)
		return;
	if (self.st_ino == parent.st_ino && self.st_dev == parent.st_dev)
		return; // in its parent's pid namespace: nothing to translate
	// This process is visible in the namespace joined: nothing there may
	// trace it or open its descriptors (nsexec does the same a little later).
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		_exit(1);
	level = skiff_status(0, "NSpid:", ns, 34) - 1;
	go = atoi(e);
	if (level < 1 || go < 3 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		_exit(1);
	r = fork();
	if (r < 0)
		_exit(1);
	if (r == 0) {
		// The relay: only its two ends stay open (the container's stdio,
		// sync and log pipes must see EOF when the init is done with them).
		int g = fcntl(go, F_DUPFD_CLOEXEC, 3), in = g < 0 ? -1 : fcntl(sv[0], F_DUPFD_CLOEXEC, g + 1);
		if (g < 0 || in < 0)
			_exit(1);
		syscall(SYS_close_range, 0, g - 1, 0);
		syscall(SYS_close_range, g + 1, in - 1, 0);
		syscall(SYS_close_range, in + 1, ~0U, 0);
		skiff_relay(g, in, ppid, level);
		_exit(0);
	}
	// The init: its init pipe is now the relay's other end.
	close(sv[0]);
	if (dup2(sv[1], go) < 0)
		_exit(1);
	close(sv[1]);
}
*/
import "C"
