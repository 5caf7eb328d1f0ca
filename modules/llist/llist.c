// SPDX-License-Identifier: GPL-2.0
/*
 * The blog's homework: build a linked list of `count` items on init, print them, and free
 * them all on exit.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/list.h>
#include <linux/slab.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A linked list of N birthdays");

static int count = 5;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "how many items to put in the list");

struct birthday {
	int day;
	int month;
	int year;
	struct list_head list;
};

static LIST_HEAD(birthday_list);

/* Frees every item; on exit, and when init fails half-way (nothing may be left behind). */
static int llist_free_all(void)
{
	struct birthday *b, *next;
	int freed = 0;

	list_for_each_entry_safe(b, next, &birthday_list, list) {
		list_del(&b->list);
		kfree(b);
		freed++;
	}
	return freed;
}

static int __init llist_init(void)
{
	int i;

	if (count < 0 || count > 10000) {
		pr_err("llist: count must be between 0 and 10000, got %d\n", count);
		return -EINVAL;
	}
	for (i = 0; i < count; i++) {
		struct birthday *b = kmalloc(sizeof(*b), GFP_KERNEL);

		if (!b) {
			llist_free_all();
			return -ENOMEM;
		}
		b->day = 1 + i % 28;
		b->month = 1 + i % 12;
		b->year = 2000 + i;
		list_add_tail(&b->list, &birthday_list);
	}
	{
		struct birthday *b;

		list_for_each_entry(b, &birthday_list, list)
			pr_info("llist: birthday %d/%d/%d\n", b->day, b->month, b->year);
	}
	pr_info("llist: created %d items\n", count);
	return 0;
}

static void __exit llist_exit(void)
{
	pr_info("llist: freed %d items\n", llist_free_all());
}

module_init(llist_init);
module_exit(llist_exit);
