# mk/release.mk: the release CLI (static Swift runtime: runs where no toolchain is installed,
# e.g. the Docker runtime stage and the accelerator machine) and the docker recipe's checks.
.PHONY: release check-docker

release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product vkverbs
	@echo "release: .build/release/vkverbs"

check-docker:
	scripts/check-docker
