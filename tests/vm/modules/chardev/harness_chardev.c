// SPDX-License-Identifier: GPL-2.0
/* A misc character device with an ioctl interface: set, get and add to a value, and read it
 * back as text. Its test drives it from a user-space client compiled in the guest. */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>

#include "harness_chardev.h"

static DEFINE_MUTEX(value_lock);
static int value;

static long hcd_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	int __user *user = (int __user *)arg;
	int in, out;

	mutex_lock(&value_lock);
	switch (cmd) {
	case HCD_SET_VALUE:
		if (get_user(in, user))
			goto fault;
		value = in;
		out = 0;
		break;
	case HCD_GET_VALUE:
		if (put_user(value, user))
			goto fault;
		out = 0;
		break;
	case HCD_ADD:
		if (get_user(in, user))
			goto fault;
		value += in;
		if (put_user(value, user))
			goto fault;
		out = 0;
		break;
	default:
		out = -ENOTTY;
	}
	mutex_unlock(&value_lock);
	return out;
fault:
	mutex_unlock(&value_lock);
	return -EFAULT;
}

static ssize_t hcd_read(struct file *file, char __user *buf, size_t len, loff_t *off)
{
	char text[32];
	int n;

	mutex_lock(&value_lock);
	n = scnprintf(text, sizeof(text), "%d\n", value);
	mutex_unlock(&value_lock);
	return simple_read_from_buffer(buf, len, off, text, n);
}

static const struct file_operations hcd_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = hcd_ioctl,
	.read = hcd_read,
	.llseek = default_llseek,
};

static struct miscdevice hcd_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "harness_chardev",
	.fops = &hcd_fops,
	.mode = 0666,
};

static int __init hcd_init(void)
{
	int err = misc_register(&hcd_device);

	if (err)
		return err;
	pr_info("harness_chardev: registered (minor %d) [ok]\n", hcd_device.minor);
	return 0;
}

static void __exit hcd_exit(void)
{
	misc_deregister(&hcd_device);
	pr_info("harness_chardev: gone (value was %d)\n", value);
}

module_init(hcd_init);
module_exit(hcd_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("harness example: a misc device with ioctls");
