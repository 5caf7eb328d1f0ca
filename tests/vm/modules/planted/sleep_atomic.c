// SPDX-License-Identifier: GPL-2.0
/* Planted bug: allocates with GFP_KERNEL (which may sleep) while holding a spinlock. */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

static DEFINE_SPINLOCK(lock);
static void *object;

static int __init sleep_atomic_init(void)
{
	spin_lock(&lock);
	object = kmalloc(64, GFP_KERNEL);
	spin_unlock(&lock);
	pr_info("sleep_atomic: allocated under a spinlock\n");
	kfree(object);
	return 0;
}

static void __exit sleep_atomic_exit(void)
{
}

module_init(sleep_atomic_init);
module_exit(sleep_atomic_exit);
MODULE_LICENSE("GPL");
