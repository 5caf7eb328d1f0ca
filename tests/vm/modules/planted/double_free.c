// SPDX-License-Identifier: GPL-2.0
/* Planted bug: frees the same object twice. */
#include <linux/module.h>
#include <linux/slab.h>

static void *volatile again;

static int __init double_free_init(void)
{
	void *item = kmalloc(64, GFP_KERNEL);

	if (!item)
		return -ENOMEM;
	kfree(item);
	again = item;
	kfree(again);
	pr_info("double_free: freed twice\n");
	return 0;
}

static void __exit double_free_exit(void)
{
}

module_init(double_free_init);
module_exit(double_free_exit);
MODULE_LICENSE("GPL");
