// SPDX-License-Identifier: GPL-2.0
/* A procfs file (seq_file) and a sysfs attribute: /proc/harness_knobs lists the value and how
 * often it was written; /sys/kernel/harness_knobs/value reads and writes it (root only). */
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/sysfs.h>

static int value = 7;
static int writes;
static struct kobject *knobs_kobj;
static struct proc_dir_entry *proc_entry;

static int knobs_show(struct seq_file *m, void *v)
{
	seq_printf(m, "value: %d\nwrites: %d\n", value, writes);
	return 0;
}

static ssize_t value_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", value);
}

static ssize_t value_store(struct kobject *kobj, struct kobj_attribute *attr, const char *buf,
			   size_t count)
{
	int err = kstrtoint(buf, 10, &value);

	if (err)
		return err;
	writes++;
	pr_info("harness_knobs: value set to %d (write #%d)\n", value, writes);
	return count;
}

static struct kobj_attribute value_attr = __ATTR(value, 0644, value_show, value_store);

static int __init knobs_init(void)
{
	int err;

	knobs_kobj = kobject_create_and_add("harness_knobs", kernel_kobj);
	if (!knobs_kobj)
		return -ENOMEM;
	err = sysfs_create_file(knobs_kobj, &value_attr.attr);
	if (err)
		goto put;
	proc_entry = proc_create_single("harness_knobs", 0444, NULL, knobs_show);
	if (!proc_entry) {
		err = -ENOMEM;
		goto put;
	}
	pr_info("harness_knobs: ready\n");
	return 0;
put:
	kobject_put(knobs_kobj);
	return err;
}

static void __exit knobs_exit(void)
{
	proc_remove(proc_entry);
	kobject_put(knobs_kobj);
}

module_init(knobs_init);
module_exit(knobs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("harness example: procfs and sysfs");
