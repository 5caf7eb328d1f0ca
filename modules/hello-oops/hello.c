// SPDX-License-Identifier: GPL-2.0
/* The blog's bug: hello, with a NULL pointer written in module_exit. */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/kernel.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Hello World, with the blog's NULL write on unload");

static int __init hello_init(void)
{
	printk(KERN_INFO "Hello World\n");
	return 0;
}

static void __exit hello_exit(void)
{
	int *p = NULL;

	printk(KERN_INFO "Goodbye, cruel world, I'm leaving you today\n");
	*p = 0;
}

module_init(hello_init);
module_exit(hello_exit);
