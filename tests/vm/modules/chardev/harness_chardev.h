/* The ioctl interface shared by the driver and its user-space client. */
#ifndef HARNESS_CHARDEV_H
#define HARNESS_CHARDEV_H

#include <linux/ioctl.h>

#define HCD_MAGIC 'h'
#define HCD_SET_VALUE _IOW(HCD_MAGIC, 1, int)
#define HCD_GET_VALUE _IOR(HCD_MAGIC, 2, int)
#define HCD_ADD _IOWR(HCD_MAGIC, 3, int)

#endif
