// SPDX-License-Identifier: GPL-2.0
/* Planted bug: writes one byte past a 20-byte object, still inside its 32-byte slab slot
 * (the allocator rounds up, so nothing else is overwritten and a stock kernel sees nothing). */
#include <linux/module.h>
#include <linux/slab.h>

static volatile int index = 20;

static int __init slab_oob_init(void)
{
	char *buffer = kmalloc(20, GFP_KERNEL);

	if (!buffer)
		return -ENOMEM;
	buffer[index] = 'x';
	pr_info("slab_oob: wrote past the end\n");
	kfree(buffer);
	return 0;
}

static void __exit slab_oob_exit(void)
{
}

module_init(slab_oob_init);
module_exit(slab_oob_exit);
MODULE_LICENSE("GPL");
