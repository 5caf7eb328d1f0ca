// SPDX-License-Identifier: GPL-2.0
/* Planted bug: reads an object after freeing it. */
#include <linux/module.h>
#include <linux/slab.h>

struct item {
	long value;
	char name[24];
};

static long seen;

static int __init uaf_read_init(void)
{
	struct item *item = kmalloc(sizeof(*item), GFP_KERNEL);

	if (!item)
		return -ENOMEM;
	item->value = 42;
	kfree(item);
	seen = READ_ONCE(item->value);
	pr_info("uaf_read: read %ld\n", seen);
	return 0;
}

static void __exit uaf_read_exit(void)
{
}

module_init(uaf_read_init);
module_exit(uaf_read_exit);
MODULE_LICENSE("GPL");
