// SPDX-License-Identifier: GPL-2.0
/* Planted bug: allocates 100 objects and never frees them. */
#include <linux/module.h>
#include <linux/slab.h>

#define OBJECTS 100

static int __init leak_init(void)
{
	int i;

	for (i = 0; i < OBJECTS; i++) {
		void *object = kmalloc(128, GFP_KERNEL);

		if (!object)
			return -ENOMEM;
		memset(object, i, 128);
	}
	pr_info("leak: allocated %d objects\n", OBJECTS);
	return 0;
}

static void __exit leak_exit(void)
{
}

module_init(leak_init);
module_exit(leak_exit);
MODULE_LICENSE("GPL");
