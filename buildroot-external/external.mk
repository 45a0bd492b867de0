include $(sort $(wildcard $(BR2_EXTERNAL_RE6ST_PATH)/package/*/*.mk))
