/* User-space client of harness_chardev: hcd_client DEVICE set N | get | add N */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "harness_chardev.h"

int main(int argc, char **argv)
{
	int fd, v = 0;
	unsigned long cmd;

	if (argc < 3) {
		fprintf(stderr, "usage: %s DEVICE set N | get | add N\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (!strcmp(argv[2], "set") && argc == 4) {
		cmd = HCD_SET_VALUE;
		v = atoi(argv[3]);
	} else if (!strcmp(argv[2], "add") && argc == 4) {
		cmd = HCD_ADD;
		v = atoi(argv[3]);
	} else if (!strcmp(argv[2], "get")) {
		cmd = HCD_GET_VALUE;
	} else {
		cmd = _IO('h', 99); /* unknown: the driver must answer ENOTTY */
	}
	if (ioctl(fd, cmd, &v) < 0) {
		fprintf(stderr, "ioctl %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	printf("%d\n", v);
	close(fd);
	return 0;
}
