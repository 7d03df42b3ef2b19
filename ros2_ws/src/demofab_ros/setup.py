from glob import glob

from setuptools import find_packages, setup

package_name = "demofab_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="DemoFab maintainers",
    maintainer_email="maintainers@demofab.example",
    description="DemoFab ROS 2 recorder and player nodes",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "recorder_node = demofab_ros.recorder_node:main",
            "player_node = demofab_ros.player_node:main",
        ],
    },
)
