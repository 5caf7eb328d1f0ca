// SPDX-License-Identifier: GPL-2.0
/* Allocates `count` 128-byte objects on load and frees only `keep_freeing` of them on unload:
 * the rest leak, as a forgotten kfree in an error path or an exit function would. */
#include <linux/module.h>
#include <linux/slab.h>

static int count = 10;
module_param(count, int, 0444);
static int keep_freeing;
module_param(keep_freeing, int, 0444);

static void *objects[64];

static int __init leaky_init(void)
{
	int i;

	if (count < 0 || count > ARRAY_SIZE(objects))
		return -EINVAL;
	for (i = 0; i < count; i++) {
		objects[i] = kmalloc(128, GFP_KERNEL);
		if (!objects[i])
			return -ENOMEM;
	}
	pr_info("leaky: allocated %d objects\n", count);
	return 0;
}

static void __exit leaky_exit(void)
{
	int i;

	for (i = 0; i < keep_freeing && i < count; i++)
		kfree(objects[i]);
	pr_info("leaky: freed %d of %d objects\n", min(keep_freeing, count), count);
}

module_init(leaky_init);
module_exit(leaky_exit);
MODULE_LICENSE("GPL");
