// SPDX-License-Identifier: GPL-2.0
/* Planted bug: writes to an object after freeing it. */
#include <linux/module.h>
#include <linux/slab.h>

struct item {
	long value;
	char name[24];
};

static int __init uaf_write_init(void)
{
	struct item *item = kmalloc(sizeof(*item), GFP_KERNEL);

	if (!item)
		return -ENOMEM;
	kfree(item);
	WRITE_ONCE(item->value, 42);
	pr_info("uaf_write: wrote after free\n");
	return 0;
}

static void __exit uaf_write_exit(void)
{
}

module_init(uaf_write_init);
module_exit(uaf_write_exit);
MODULE_LICENSE("GPL");
