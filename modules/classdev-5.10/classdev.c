// SPDX-License-Identifier: GPL-2.0
/*
 * A device class with one device in it: /sys/class/harness_classdev/harness_classdev0.
 *
 * Written against Linux 5.10's API, as a module of that time was: class_create() took the
 * owning module then, and lost that argument in 6.4 (commit 1aaba11da9aa, "driver core:
 * class: remove module * from class_create()"). So this builds on 5.10 and 6.1 and fails on
 * every kernel from 6.4 on; modules/classdev is the fixed version.
 */
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/module.h>

static dev_t devt;
static struct class *cls;
static struct device *dev;

static int __init classdev_init(void)
{
	int err = alloc_chrdev_region(&devt, 0, 1, "harness_classdev");

	if (err)
		return err;
	cls = class_create(THIS_MODULE, "harness_classdev");
	if (IS_ERR(cls)) {
		err = PTR_ERR(cls);
		goto unregister;
	}
	dev = device_create(cls, NULL, devt, NULL, "harness_classdev0");
	if (IS_ERR(dev)) {
		err = PTR_ERR(dev);
		goto destroy_class;
	}
	pr_info("classdev: created harness_classdev0 (%d:%d)\n", MAJOR(devt), MINOR(devt));
	return 0;

destroy_class:
	class_destroy(cls);
unregister:
	unregister_chrdev_region(devt, 1);
	return err;
}

static void __exit classdev_exit(void)
{
	device_destroy(cls, devt);
	class_destroy(cls);
	unregister_chrdev_region(devt, 1);
	pr_info("classdev: removed harness_classdev0\n");
}

module_init(classdev_init);
module_exit(classdev_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a device class across the class_create() API change of 6.4");
