// SPDX-License-Identifier: GPL-2.0
/* The blog's module: a greeting on load, a farewell on unload. */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/kernel.h>

MODULE_LICENSE("GPL");
MODULE_AUTHOR("harness");
MODULE_DESCRIPTION("Hello World, the first module");

static int __init hello_init(void)
{
	printk(KERN_INFO "Hello World\n");
	return 0;
}

static void __exit hello_exit(void)
{
	printk(KERN_INFO "Goodbye, cruel world, I'm leaving you today\n");
}

module_init(hello_init);
module_exit(hello_exit);
