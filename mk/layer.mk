# mk/layer.mk: the VK_NV_external_memory_rdma emulation layer, ready for the Vulkan loader.
#   make vulkan-layer      builds libVkLayerRDMA.so and writes its manifest; then
#   export VK_ADD_LAYER_PATH=$PWD/.build/vulkan-layer  and use `vkverbs ... --layer` or VKVERBS_RDMA_LAYER=1
LAYER_DIR := .build/vulkan-layer
.PHONY: vulkan-layer

vulkan-layer: deps
	$(SWIFT) build --product VkLayerRDMA
	mkdir -p $(LAYER_DIR)
	sed 's|@LIBRARY_PATH@|$(abspath .build/debug/libVkLayerRDMA.so)|' \
	  Sources/VkLayerRDMA/manifest/VkLayer_vkverbs_rdma.json.in > $(LAYER_DIR)/VkLayer_vkverbs_rdma.json
	@echo "vulkan-layer: export VK_ADD_LAYER_PATH=$(abspath $(LAYER_DIR))"
