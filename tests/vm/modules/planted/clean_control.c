// SPDX-License-Identifier: GPL-2.0
/* The control: allocates, locks and frees correctly. No box may report anything. */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/list.h>

struct item {
	int value;
	struct list_head node;
};

static LIST_HEAD(items);
static DEFINE_MUTEX(items_lock);

static int __init clean_control_init(void)
{
	int i;

	mutex_lock(&items_lock);
	for (i = 0; i < 100; i++) {
		struct item *item = kmalloc(sizeof(*item), GFP_KERNEL);

		if (!item)
			break;
		item->value = i;
		list_add_tail(&item->node, &items);
	}
	mutex_unlock(&items_lock);
	pr_info("clean_control: %d items\n", i);
	return 0;
}

static void __exit clean_control_exit(void)
{
	struct item *item, *next;

	mutex_lock(&items_lock);
	list_for_each_entry_safe(item, next, &items, node) {
		list_del(&item->node);
		kfree(item);
	}
	mutex_unlock(&items_lock);
}

module_init(clean_control_init);
module_exit(clean_control_exit);
MODULE_LICENSE("GPL");
