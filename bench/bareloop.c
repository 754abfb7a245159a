/*
 * bareloop: the floor of this design.
 *
 * Two TAP devices opened the way vswitch opens its ports (IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, the same offloads), and one epoll loop that copies every frame,
 * virtio-net header included, from one to the other.  No parsing, no learning,
 * no lookup, no Python: whatever a real switch built this way costs beyond this
 * program is the price of its own features.  The benchmark harness runs it as a
 * "switch" beside the real ones.
 *
 *   bareloop TAP_A TAP_B
 *
 * Prints one line "ready TAP_A TAP_B offloads=0x.." on stdout once both devices
 * exist (the harness then moves them into the namespaces; the fds keep working
 * across the move).  SIGTERM or SIGINT ends it; it then prints its counters on
 * stderr.  Without TUNSETPERSIST the devices disappear when it exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Older headers lack the UDP segmentation offload bits (Linux 6.2+). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

/* Same batch bound as the engine: one wakeup never starves the other port. */
#define BATCH 32
/* A GSO frame is up to 64 KiB of IP plus link header plus the 10-byte
 * virtio-net header; a short buffer would silently truncate it. */
#define BUF_SIZE (128 * 1024)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int open_tap(const char *name, unsigned int *offloads)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		perror("open /dev/net/tun");
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (strlen(name) >= IFNAMSIZ) {
		fprintf(stderr, "bareloop: name too long: %s\n", name);
		close(fd);
		return -1;
	}
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "bareloop: TUNSETIFF %s: %s\n", name, strerror(errno));
		close(fd);
		return -1;
	}
	/* Ask for everything vswitch asks for; an unknown bit is EINVAL, so
	 * retry without USO on kernels that predate it. */
	*offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN |
		    TUN_F_USO4 | TUN_F_USO6;
	if (ioctl(fd, TUNSETOFFLOAD, *offloads) < 0) {
		*offloads &= ~(unsigned int)(TUN_F_USO4 | TUN_F_USO6);
		if (ioctl(fd, TUNSETOFFLOAD, *offloads) < 0) {
			fprintf(stderr, "bareloop: TUNSETOFFLOAD %s: %s\n", name,
				strerror(errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

int main(int argc, char **argv)
{
	static unsigned char buf[BUF_SIZE];
	unsigned long long copied[2] = {0, 0}, write_errors[2] = {0, 0};
	struct epoll_event ev, events[2];
	struct sigaction sa;
	unsigned int offloads = 0;
	int fds[2], ep, i;

	if (argc != 3) {
		fprintf(stderr, "usage: %s TAP_A TAP_B\n", argv[0]);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait must return EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	for (i = 0; i < 2; i++) {
		fds[i] = open_tap(argv[1 + i], &offloads);
		if (fds[i] < 0)
			return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	for (i = 0; i < 2; i++) {
		/* Level-triggered: a port left with frames after a full batch is
		 * reported again on the next epoll_wait. */
		ev.events = EPOLLIN;
		ev.data.u32 = (unsigned int)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
			perror("epoll_ctl");
			return 1;
		}
	}
	printf("ready %s %s offloads=0x%02x\n", argv[1], argv[2], offloads);
	fflush(stdout);

	while (!stop_requested) {
		int n = epoll_wait(ep, events, 2, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 1;
		}
		for (i = 0; i < n; i++) {
			int from = (int)events[i].data.u32, to = 1 - from, k;

			for (k = 0; k < BATCH; k++) {
				ssize_t len = read(fds[from], buf, sizeof(buf));

				if (len < 0) {
					if (errno == EINTR)
						continue;
					if (errno == EAGAIN)
						break;
					/* EIO/EBADFD: the device went away (namespace
					 * deleted); nothing left to switch. */
					fprintf(stderr, "bareloop: read: %s\n", strerror(errno));
					stop_requested = 1;
					break;
				}
				/* A write to a TAP runs the receiving stack and does not
				 * block; it fails only if the peer device is down. */
				if (write(fds[to], buf, (size_t)len) < 0)
					write_errors[from]++;
				else
					copied[from]++;
			}
		}
	}
	fprintf(stderr, "bareloop: copied a->b %llu b->a %llu, write errors %llu/%llu\n",
		copied[0], copied[1], write_errors[0], write_errors[1]);
	return 0;
}
